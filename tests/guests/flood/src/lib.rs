//! Hands the host as much as it can, to measure and bound what the host
//! allocates for a step (see scripts/measure-host-memory.sh):
//! `how = "log"`: one log message of `mib` MiB of `fill`;
//! `how = "flood"`: `mib` MiB of log in messages of 64 KiB;
//! `how = "list"`: a probe with `n` empty arguments;
//! `how = "path"`: a stat of a path of `mib` MiB;
//! `how = "walk"`: a walk of `path`, counted;
//! `how = "summary"`: a plan whose one summary line is `mib` MiB of `fill`.
use mend_sdk::prelude::*;

#[derive(Params, Deserialize)]
pub struct Params {
    /// log, flood, list, path, walk or summary
    how: String,
    /// size in MiB
    #[serde(default)]
    mib: u64,
    /// number of list elements
    #[serde(default)]
    n: u64,
    /// what to walk
    #[serde(default)]
    path: String,
    /// what to fill strings with (default `x`)
    #[serde(default)]
    fill: Option<String>,
}

fn filled(fill: &Option<String>, mib: u64) -> String {
    let unit = fill.as_deref().unwrap_or("x");
    let n = (mib << 20) as usize / unit.len().max(1);
    unit.repeat(n)
}

pub struct Flood;
impl Step for Flood {
    type Params = Params;
    const NAME: &'static str = "flood";
    const SUMMARY: &'static str = "Hand the host huge values";
    fn plan(_: &Context, p: Params, host: &dyn Host) -> Result<Plan, StepError> {
        let line = match p.how.as_str() {
            "log" => {
                host.log(Level::Info, &filled(&p.fill, p.mib));
                format!("logged {} MiB in one message", p.mib)
            }
            "flood" => {
                let chunk = "f".repeat(64 << 10);
                for _ in 0..p.mib * 16 {
                    host.log(Level::Info, &chunk);
                }
                format!("logged {} MiB", p.mib)
            }
            "list" => {
                let args = vec![""; p.n as usize];
                let r = host.probe("nope", &args);
                format!(
                    "probe with {} arguments: {:?}",
                    p.n,
                    r.err().map(|e| e.text().len())
                )
            }
            "path" => {
                let path = format!("data/{}", "p".repeat((p.mib << 20) as usize));
                let r = host.stat(&path);
                format!(
                    "stat of a {} MiB path: {} bytes of error",
                    p.mib,
                    r.err().map(|e| e.text().len()).unwrap_or(0)
                )
            }
            "walk" => {
                let mut n = 0u64;
                host.walk(&p.path, &mut |_| n += 1)?;
                format!("walked {n} entries")
            }
            "summary" => filled(&p.fill, p.mib),
            other => return Err(StepError::new(format!("unknown how `{other}`"))),
        };
        Ok(Plan::builder().summary(line).build())
    }
}
mend_sdk::export_step!(Flood);
