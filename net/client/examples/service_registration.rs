//! Service registration: a service instance publishes its address under `/services/<name>/`
//! attached to a lease kept alive while it runs; watchers see instances come and go (a crashed
//! instance disappears when its lease expires).
//!
//! `cargo run -p keel-client --example service_registration -- 127.0.0.1:2379 web 10.0.0.7:80`

use keel_client::{Client, ConnectOptions, LeaseState};

#[tokio::main(flavor = "current_thread")]
async fn main() -> keel_client::Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let endpoint = args
        .first()
        .cloned()
        .unwrap_or_else(|| "127.0.0.1:2379".into());
    let service = args.get(1).cloned().unwrap_or_else(|| "web".into());
    let addr = args
        .get(2)
        .cloned()
        .unwrap_or_else(|| "127.0.0.1:8080".into());
    let client = Client::connect([endpoint], ConnectOptions::default()).await?;

    // Register: one key per instance, attached to a 10 s lease kept alive in the background.
    let lease = client.lease_grant(10).await?;
    let key = format!("/services/{service}/{:x}", lease.id);
    client
        .put(key.clone(), addr.clone())
        .lease(lease.id)
        .await?;
    let mut keep_alive = client.keep_alive(lease.id);
    println!("registered {key} -> {addr}");

    // Discover: the current instances, then every change.
    let prefix = format!("/services/{service}/");
    let now = client.get(prefix.clone()).prefix().await?;
    for kv in &now.kvs {
        println!("instance {}", String::from_utf8_lossy(&kv.value));
    }
    let mut watch = client
        .watch(prefix)
        .prefix()
        .rev(now.header.revision + 1)
        .await?;
    loop {
        tokio::select! {
            batch = watch.next() => {
                let Some(batch) = batch else { break };
                for ev in batch?.events {
                    println!("{:?} {}", ev.event_type, String::from_utf8_lossy(&ev.kv.key));
                }
            }
            state = keep_alive.changed() => {
                if let LeaseState::Lost(e) = state {
                    eprintln!("registration lost: {e}");
                    break;
                }
            }
            _ = tokio::signal::ctrl_c() => {
                client.lease_revoke(lease.id).await?; // deregister at once
                break;
            }
        }
    }
    Ok(())
}
