//! How late a step is killed after its deadline. Runs the `spin` guest (a
//! busy loop: stopped by epoch interruption) and the `sleep` guest (blocked
//! in a WASI sleep or poll: stopped by the host's timer) with a short
//! deadline, many times, and prints how long after the deadline each call
//! returned: min, median, p99, max. The time counted starts when the call
//! starts (instantiating the step, about 0.1 ms, is inside it).
//!
//! Run: nice -n 10 cargo bench -p mend --bench deadline

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use mend_host::commands::CommandPolicy;
use mend_host::grants::Grants;
use mend_host::sandbox::{HostCtx, Limits, Sandbox, StepFault, wit};

const RUNS: usize = 200;
const DEADLINE: Duration = Duration::from_millis(100);

fn guest(name: &str) -> Vec<u8> {
    let path = mend::load::bundled::TEST_GUESTS
        .iter()
        .find(|(n, _)| *n == name)
        .unwrap_or_else(|| panic!("no test guest {name}"))
        .1;
    std::fs::read(Path::new(path)).expect("guest built by build.rs")
}

fn ms(d: f64) -> String {
    format!("{d:>8.2} ms")
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> anyhow::Result<()> {
    let sandbox = Sandbox::new(None)?;
    let limits = Limits {
        timeout: DEADLINE,
        memory: 64 << 20,
    };
    println!(
        "lateness of the kill after a {} ms deadline, {RUNS} runs each\n",
        DEADLINE.as_millis()
    );
    println!(
        "  {:<28} {:>11} {:>11} {:>11} {:>11}",
        "guest", "min", "median", "p99", "max"
    );
    for (name, params) in [
        ("spin", "{}"),
        ("sleep", r#"{"how":"sleep"}"#),
        ("sleep", r#"{"how":"poll"}"#),
    ] {
        let step = sandbox.load(name, &guest(name))?;
        let mut late = Vec::with_capacity(RUNS);
        for _ in 0..RUNS {
            let host = HostCtx::new(
                "bench",
                Arc::new(Grants::default()),
                CommandPolicy::default(),
                Vec::new(),
                0,
                DEADLINE,
            );
            let cx = wit::Context {
                step_id: "bench".into(),
                grants: Vec::new(),
                commands: Vec::new(),
                now: 0,
            };
            let start = Instant::now();
            let r = sandbox
                .plan(&step, host, limits, cx, params.to_string())
                .await;
            let took = start.elapsed();
            match r {
                Err(StepFault::Deadline { .. }) => {}
                Err(e) => anyhow::bail!("{name}: {e}"),
                Ok(_) => anyhow::bail!("{name}: returned before its deadline"),
            }
            late.push(took.as_secs_f64() * 1e3 - DEADLINE.as_secs_f64() * 1e3);
        }
        late.sort_by(f64::total_cmp);
        let q = |p: usize| late[(late.len() * p / 100).min(late.len() - 1)];
        println!(
            "  {:<28} {} {} {} {}",
            format!("{name} {params}"),
            ms(late[0]),
            ms(q(50)),
            ms(q(99)),
            ms(late[late.len() - 1])
        );
    }
    Ok(())
}
