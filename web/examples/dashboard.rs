//! Serves the dashboard over the in-memory demo grid on loopback, for a look in a browser
//! without a controller: `cargo run -p xgrid-web --example dashboard [SECONDS] [PASSWORD]`.
//! It prints its address, moves the demo along every two seconds, and stops by itself
//! after SECONDS (default 600).

use std::sync::Arc;
use std::time::Duration;

use xgrid_web::demo::DemoGrid;
use xgrid_web::view::Date;

#[tokio::main(flavor = "current_thread")]
async fn main() -> std::io::Result<()> {
    let mut args = std::env::args().skip(1);
    let seconds: u64 = args.next().and_then(|s| s.parse().ok()).unwrap_or(600);
    let password = args.next();
    let grid = Arc::new(DemoGrid::new(DemoGrid::sample_state(Date::now()), password));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    println!("http://{}/", listener.local_addr()?);
    let ticker = Arc::clone(&grid);
    tokio::spawn(async move {
        for step in 0.. {
            tokio::time::sleep(Duration::from_secs(2)).await;
            ticker.tick(step);
        }
    });
    xgrid_web::serve(
        listener,
        grid,
        tokio::time::sleep(Duration::from_secs(seconds)),
    )
    .await
}
