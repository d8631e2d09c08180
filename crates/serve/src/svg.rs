//! The timeline picture, drawn here as SVG text (no charting library, no
//! script): each step a bar on a time axis, coloured by its status, the
//! rollback in orange over the steps it undid and as its own row, and the
//! free space of each write grant before and after the run. The same file
//! goes to `/runs/ID/timeline.svg` and to `mend report RUN --svg FILE`.
//! Every text from the journal is escaped: a step's words are data.

use std::fmt::Write as _;

use anyhow::Result;
use mend_journal::{GrantSpace, Journal, Redact, RunRecord, StepRecord};

/// One step's bar.
pub struct Bar {
    pub label: String,
    pub status: String,
    pub start: i64,
    /// `None`: still going (drawn to the picture's end).
    pub end: Option<i64>,
    /// When its actions were undone (first, last), if any were.
    pub undo: Option<(i64, i64)>,
}

/// What the picture shows of one run.
pub struct Timeline {
    pub title: String,
    pub start: i64,
    /// The run's end, or now while it runs.
    pub end: i64,
    pub bars: Vec<Bar>,
    /// The rollback of the whole run (first undo, end), if it rolled back.
    pub rollback: Option<(i64, i64)>,
    pub space: Vec<GrantSpace>,
}

/// The colours, by what they mean (the page's style sheet uses the same).
const DONE: &str = "#2e7d32";
const RUNNING: &str = "#1565c0";
const FAILED: &str = "#c62828";
const UNDONE: &str = "#8d8d8d";
const WAITING: &str = "#cfd8dc";
/// The rollback's colour.
pub const ROLLBACK: &str = "#ef6c00";

fn colour(status: &str) -> &'static str {
    match status {
        "verified" | "applied" | "committed" | "held" => DONE,
        "applying" | "running" => RUNNING,
        "failed" | "rollback-failed" => FAILED,
        "undone" | "rolled-back" => UNDONE,
        _ => WAITING,
    }
}

/// Text for XML: made visible as the terminal shows it, then escaped; any
/// char XML 1.0 cannot hold becomes U+FFFD.
pub fn xml(text: &str) -> String {
    let clean = mend_human::sanitize(text);
    let mut out = String::with_capacity(clean.len());
    for c in clean.chars() {
        match c {
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '&' => out.push_str("&amp;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            '\t' | '\n' | '\r' => out.push(' '),
            c if (c as u32) < 0x20 || c == '\u{fffe}' || c == '\u{ffff}' => out.push('\u{fffd}'),
            c => out.push(c),
        }
    }
    out
}

impl Timeline {
    /// Reads run `id` (secret params masked). Call inside `Journal::snapshot`.
    pub fn load(j: &Journal, id: &str) -> Result<Timeline> {
        let run = j.run(id)?;
        let r = Redact::of_run(&run);
        let steps: Vec<StepRecord> = j.steps(&run.id)?.into_iter().map(|s| r.step(s)).collect();
        let mut bars = Vec::with_capacity(steps.len());
        for s in &steps {
            bars.push(Bar {
                label: format!("{}. {}", s.idx + 1, s.step_id),
                status: s.status.to_string(),
                start: s.started_at,
                end: s.finished_at,
                undo: j.undo_span(&run.id, s.idx)?,
            });
        }
        Ok(Timeline::of(&run, bars, j.grant_spaces(&run.id)?))
    }

    fn of(run: &RunRecord, bars: Vec<Bar>, space: Vec<GrantSpace>) -> Timeline {
        let title = format!(
            "{} {} · run {} · {}",
            run.runbook_name, run.runbook_version, run.id, run.status
        );
        Timeline::from_parts(
            title,
            run.started_at,
            run.finished_at,
            run.status.as_str(),
            bars,
            space,
        )
    }

    /// A run's picture from its parts: what the fleet view has of a host's
    /// run (it holds no `RunRecord`) draws the same way.
    pub fn from_parts(
        title: String,
        started_at: i64,
        finished_at: Option<i64>,
        status: &str,
        bars: Vec<Bar>,
        space: Vec<GrantSpace>,
    ) -> Timeline {
        let end = finished_at.unwrap_or_else(mend_journal::now_ms);
        let rolled = matches!(status, "rolled-back" | "rollback-failed" | "rolling-back");
        // The rollback began with its first undo (an action's, or a step
        // without actions marked undone).
        let rollback = rolled
            .then(|| {
                bars.iter()
                    .filter_map(|b| {
                        b.undo
                            .map(|u| u.0)
                            .or((b.status == "undone").then_some(b.end?))
                    })
                    .min()
                    .map(|first| (first.min(end), end))
            })
            .flatten();
        Timeline {
            title,
            start: started_at,
            end: end.max(started_at + 1),
            bars,
            rollback,
            space,
        }
    }

    /// The picture.
    pub fn svg(&self) -> String {
        const W: f64 = 960.0;
        const LEFT: f64 = 230.0;
        const RIGHT: f64 = 20.0;
        const ROW: f64 = 26.0;
        const TOP: f64 = 44.0;
        let plot = W - LEFT - RIGHT;
        let span = (self.end - self.start).max(1) as f64;
        let x = |t: i64| LEFT + ((t - self.start).max(0) as f64 / span).min(1.0) * plot;
        let rows = self.bars.len() + usize::from(self.rollback.is_some());
        let axis_y = TOP + rows as f64 * ROW + 8.0;
        let space_top = axis_y + 40.0;
        let height = space_top + self.space_rows() as f64 * ROW + 30.0;

        let mut s = String::new();
        let _ = write!(
            s,
            "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n\
             <svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{W}\" height=\"{height}\" \
             viewBox=\"0 0 {W} {height}\" font-family=\"DejaVu Sans, sans-serif\" font-size=\"13\">\n\
             <title>{}</title>\n<rect width=\"100%\" height=\"100%\" fill=\"#ffffff\"/>\n\
             <text x=\"10\" y=\"22\" font-size=\"15\" font-weight=\"bold\">{}</text>\n",
            xml(&self.title),
            xml(&self.title)
        );
        // Grid and axis: at most 8 ticks on a round step.
        let step = tick_step(self.end - self.start);
        let mut t = 0;
        while t <= self.end - self.start {
            let tx = x(self.start + t);
            let _ = writeln!(
                s,
                "<line x1=\"{tx:.1}\" y1=\"{TOP}\" x2=\"{tx:.1}\" y2=\"{axis_y}\" stroke=\"#e0e0e0\"/>\
                 <text x=\"{tx:.1}\" y=\"{:.1}\" text-anchor=\"middle\" fill=\"#555\">{}</text>",
                axis_y + 16.0,
                xml(&clock(t, step))
            );
            t += step;
        }
        let _ = writeln!(
            s,
            "<line x1=\"{LEFT}\" y1=\"{axis_y}\" x2=\"{:.1}\" y2=\"{axis_y}\" stroke=\"#555\"/>",
            W - RIGHT
        );
        for (i, b) in self.bars.iter().enumerate() {
            let y = TOP + i as f64 * ROW;
            let (x0, x1) = (x(b.start), x(b.end.unwrap_or(self.end)));
            let _ = writeln!(
                s,
                "<text x=\"10\" y=\"{:.1}\">{}</text>\
                 <rect class=\"bar\" x=\"{x0:.1}\" y=\"{:.1}\" width=\"{:.1}\" height=\"{:.1}\" \
                 fill=\"{}\"><title>{}: {}, {}</title></rect>",
                y + 15.0,
                xml(&shorten(&b.label, 30)),
                y + 3.0,
                (x1 - x0).max(2.0),
                ROW - 8.0,
                colour(&b.status),
                xml(&b.label),
                xml(&b.status),
                xml(&duration(b.end.unwrap_or(self.end) - b.start))
            );
            if let Some((u0, u1)) = b.undo {
                let (ux0, ux1) = (x(u0), x(u1));
                let _ = writeln!(
                    s,
                    "<rect class=\"undo\" x=\"{ux0:.1}\" y=\"{:.1}\" width=\"{:.1}\" height=\"6\" \
                     fill=\"{ROLLBACK}\"><title>undone</title></rect>",
                    y + ROW - 9.0,
                    (ux1 - ux0).max(2.0)
                );
            }
        }
        if let Some((r0, r1)) = self.rollback {
            let y = TOP + self.bars.len() as f64 * ROW;
            let (x0, x1) = (x(r0), x(r1));
            let _ = writeln!(
                s,
                "<text x=\"10\" y=\"{:.1}\" fill=\"{ROLLBACK}\">rollback</text>\
                 <rect class=\"rollback\" x=\"{x0:.1}\" y=\"{:.1}\" width=\"{:.1}\" height=\"{:.1}\" \
                 fill=\"{ROLLBACK}\"><title>rollback, {}</title></rect>",
                y + 15.0,
                y + 3.0,
                (x1 - x0).max(2.0),
                ROW - 8.0,
                xml(&duration(r1 - r0))
            );
        }
        self.space_svg(&mut s, space_top, W - RIGHT);
        s.push_str("</svg>\n");
        s
    }

    fn space_rows(&self) -> usize {
        if self.space.is_empty() {
            0
        } else {
            1 + self.grants().len() * 2
        }
    }

    fn grants(&self) -> Vec<&str> {
        let mut g: Vec<&str> = self.space.iter().map(|s| s.grant.as_str()).collect();
        g.dedup();
        g
    }

    /// Free space of each write grant: before (grey) and after (green when
    /// it grew or held, red when it shrank), on one scale.
    fn space_svg(&self, s: &mut String, top: f64, right: f64) {
        if self.space.is_empty() {
            return;
        }
        const LEFT: f64 = 230.0;
        let max = self.space.iter().map(|g| g.free).max().unwrap_or(1).max(1) as f64;
        let width = right - LEFT - 120.0;
        let _ = writeln!(
            s,
            "<text x=\"10\" y=\"{:.1}\" font-weight=\"bold\">free space of the write grants</text>",
            top + 14.0
        );
        let mut y = top + 26.0;
        for g in self.grants() {
            let at = |m: &str| {
                self.space
                    .iter()
                    .find(|x| x.grant == g && x.moment == m)
                    .map(|x| x.free)
            };
            let before = at("before");
            let after = at("after");
            for (moment, v) in [("before", before), ("after", after)] {
                let Some(v) = v else {
                    y += 26.0;
                    continue;
                };
                let fill = match (moment, before) {
                    ("before", _) => UNDONE,
                    (_, Some(b)) if v < b => FAILED,
                    _ => DONE,
                };
                let w = (v as f64 / max * width).max(2.0);
                let _ = writeln!(
                    s,
                    "<text x=\"10\" y=\"{:.1}\">{} {moment}</text>\
                     <rect class=\"space\" x=\"{LEFT}\" y=\"{:.1}\" width=\"{w:.1}\" height=\"18\" \
                     fill=\"{fill}\"/><text x=\"{:.1}\" y=\"{:.1}\">{}</text>",
                    y + 14.0,
                    xml(&shorten(g, 20)),
                    y + 1.0,
                    LEFT + w + 6.0,
                    y + 14.0,
                    xml(&mend_human::human_bytes(v))
                );
                y += 26.0;
            }
        }
    }
}

/// A round tick step in ms giving at most 8 ticks over `span` ms.
fn tick_step(span: i64) -> i64 {
    const STEPS: &[i64] = &[
        1, 2, 5, 10, 20, 50, 100, 200, 500, 1_000, 2_000, 5_000, 10_000, 15_000, 30_000, 60_000,
        120_000, 300_000, 600_000, 900_000, 1_800_000, 3_600_000, 7_200_000, 21_600_000,
        43_200_000, 86_400_000,
    ];
    STEPS
        .iter()
        .copied()
        .find(|s| span / s <= 8)
        .unwrap_or_else(|| (span / 8).max(1))
}

/// A bar's length: in ms when under a tenth of a second.
fn duration(ms: i64) -> String {
    clock(ms, ms)
}

/// `+20 ms`, `+1.5 s`, `+2:05`, `+1:02:03`: time since the run began, as
/// exact as the ticks are apart (a run of 0.1 s is not eight `+0.0 s`).
fn clock(ms: i64, step: i64) -> String {
    let secs = ms / 1000;
    if step < 100 {
        format!("+{ms} ms")
    } else if ms < 10_000 {
        format!("+{:.1} s", ms as f64 / 1000.0)
    } else if secs < 3600 {
        format!("+{}:{:02}", secs / 60, secs % 60)
    } else {
        format!("+{}:{:02}:{:02}", secs / 3600, secs / 60 % 60, secs % 60)
    }
}

fn shorten(s: &str, n: usize) -> String {
    if s.chars().count() <= n {
        s.to_string()
    } else {
        let mut t: String = s.chars().take(n - 1).collect();
        t.push('…');
        t
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bar(label: &str, status: &str, start: i64, end: i64) -> Bar {
        Bar {
            label: label.into(),
            status: status.into(),
            start,
            end: Some(end),
            undo: None,
        }
    }

    #[test]
    fn text_is_escaped_and_ticks_are_few() {
        let t = Timeline {
            title: "<script>&\u{1}".into(),
            start: 0,
            end: 61_000,
            bars: vec![bar("1. <b>x</b>", "verified", 0, 30_000)],
            rollback: Some((40_000, 61_000)),
            space: vec![],
        };
        let svg = t.svg();
        assert!(!svg.contains("<script>") && !svg.contains("<b>"), "{svg}");
        assert!(svg.contains("&lt;b&gt;x&lt;/b&gt;"));
        assert!(svg.contains("class=\"rollback\""));
        assert_eq!(svg.matches("class=\"bar\"").count(), 1);
        assert!(tick_step(61_000) >= 61_000 / 8);
        assert_eq!(clock(125_000, 15_000), "+2:05");
        // A run of a tenth of a second: ticks 20 ms apart, each its own.
        assert_eq!(tick_step(120), 20);
        assert_eq!(clock(40, 20), "+40 ms");
        assert_eq!(clock(400, 100), "+0.4 s");
    }
}
