//! Leader election: campaign, act as leader, proclaim progress, resign; an observer prints every
//! leader change.
//!
//! `cargo run -p keel-client --example leader_election -- 127.0.0.1:2379 node-1`

use keel_client::{Client, ConnectOptions, Election, Session};

#[tokio::main(flavor = "current_thread")]
async fn main() -> keel_client::Result<()> {
    let mut args = std::env::args().skip(1);
    let endpoint = args.next().unwrap_or_else(|| "127.0.0.1:2379".into());
    let me = args.next().unwrap_or_else(|| "node-1".into());
    let client = Client::connect([endpoint], ConnectOptions::default()).await?;
    let session = Session::new(&client, 10).await?;
    let election = Election::new(&session, "/election/scheduler");

    let mut changes = election.observe();
    tokio::spawn(async move {
        while let Some(Ok(kv)) = changes.recv().await {
            println!("leader is now {}", String::from_utf8_lossy(&kv.value));
        }
    });

    let leadership = election.campaign(me.clone()).await?;
    println!("{me} leads (term token {})", leadership.revision());
    for step in 1..=3 {
        leadership.proclaim(format!("{me} step {step}")).await?;
    }
    leadership.resign().await?;
    session.close().await?;
    Ok(())
}
