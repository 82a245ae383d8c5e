//! A distributed lock guarding a critical section, with the fencing token used to make the
//! protected write conditional on still holding the lock.
//!
//! `cargo run -p keel-client --example lock -- 127.0.0.1:2379`

use keel_client::{Client, ConnectOptions, Mutex, Op, Session};

#[tokio::main(flavor = "current_thread")]
async fn main() -> keel_client::Result<()> {
    let endpoint = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "127.0.0.1:2379".into());
    let client = Client::connect([endpoint], ConnectOptions::default()).await?;
    let session = Session::new(&client, 10).await?;
    let mutex = Mutex::new(&session, "/locks/report");

    let guard = mutex.lock().await?;
    println!("locked, fencing token {}", guard.fencing_token());
    // The write happens only if we still own the lock (our session could have expired).
    let done = client
        .txn()
        .when([guard.still_held()])
        .and_then([Op::put("/report/owner", guard.fencing_token().to_string())])
        .await?;
    println!("fenced write applied: {}", done.succeeded);
    guard.unlock().await?;
    session.close().await?;
    Ok(())
}
