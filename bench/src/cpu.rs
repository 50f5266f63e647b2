//! CPU time spent by the PostgreSQL server and by this process (the API,
//! the workers and the bench client, all in-process) over a measured window:
//! on a 2-core machine with the database on the same box, that split is
//! where a throughput ceiling comes from.

/// Clock ticks per second of `/proc/*/stat` times (`sysconf(_SC_CLK_TCK)`),
/// 100 on every Linux this runs on.
const TICKS_PER_SEC: f64 = 100.0;

/// CPU seconds used so far.
#[derive(Debug, Clone, Copy)]
pub struct CpuTimes {
    pub postgres: f64,
    pub platform: f64,
}

/// Per-unit CPU between two readings, in µs.
#[derive(Debug, Clone, Copy)]
pub struct CpuPerUnit {
    pub postgres_us: f64,
    pub platform_us: f64,
}

impl CpuTimes {
    /// The server (`postmaster` and its live children, plus the children it
    /// already reaped, which the kernel adds to its `cutime`/`cstime`) and
    /// this process (every thread).
    pub fn read(postmaster: u32) -> anyhow::Result<Self> {
        let server = Stat::read(&postmaster.to_string())?;
        let mut postgres = server.own + server.reaped_children;
        for entry in std::fs::read_dir("/proc")? {
            let name = entry?.file_name();
            let Some(pid) = name
                .to_str()
                .filter(|n| n.bytes().all(|b| b.is_ascii_digit()))
            else {
                continue;
            };
            // A backend may exit between the listing and the read.
            if let Ok(stat) = Stat::read(pid) {
                if stat.parent == postmaster {
                    postgres += stat.own + stat.reaped_children;
                }
            }
        }
        Ok(Self {
            postgres,
            platform: Stat::read("self")?.own,
        })
    }

    /// CPU per unit of work (e.g. per execution) since `earlier`.
    pub fn per_unit_since(&self, earlier: &CpuTimes, units: usize) -> CpuPerUnit {
        let per = |now: f64, then: f64| (now - then) * 1e6 / units as f64;
        CpuPerUnit {
            postgres_us: per(self.postgres, earlier.postgres),
            platform_us: per(self.platform, earlier.platform),
        }
    }
}

impl CpuPerUnit {
    /// The rate two cores could sustain if they did nothing but this work:
    /// the ceiling the split implies, whatever the code's concurrency.
    pub fn ceiling_per_sec(&self, cores: usize) -> f64 {
        cores as f64 * 1e6 / (self.postgres_us + self.platform_us)
    }
}

/// The fields of `/proc/<pid>/stat` used here.
struct Stat {
    parent: u32,
    /// utime + stime, in seconds.
    own: f64,
    /// cutime + cstime, in seconds.
    reaped_children: f64,
}

impl Stat {
    fn read(pid: &str) -> anyhow::Result<Self> {
        let text = std::fs::read_to_string(format!("/proc/{pid}/stat"))?;
        // The command name is in parentheses and may hold spaces: the fields
        // that matter come after the last ')'. After it: state, ppid, …,
        // utime (12th), stime, cutime, cstime.
        let after = text
            .rfind(')')
            .map(|end| &text[end + 1..])
            .ok_or_else(|| anyhow::anyhow!("malformed /proc/{pid}/stat"))?;
        let fields: Vec<&str> = after.split_whitespace().collect();
        let number = |i: usize| -> anyhow::Result<u64> {
            Ok(fields
                .get(i)
                .ok_or_else(|| anyhow::anyhow!("short /proc/{pid}/stat"))?
                .parse()?)
        };
        let seconds = |a: usize, b: usize| -> anyhow::Result<f64> {
            Ok((number(a)? + number(b)?) as f64 / TICKS_PER_SEC)
        };
        Ok(Self {
            parent: u32::try_from(number(1)?)?,
            own: seconds(11, 12)?,
            reaped_children: seconds(13, 14)?,
        })
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[test]
    fn this_process_is_read_with_its_parent_and_cpu_time() {
        // Burn a little CPU so the reading cannot be zero by accident.
        let started = std::time::Instant::now();
        let mut x = 0u64;
        while started.elapsed() < Duration::from_millis(30) {
            x = x.wrapping_add(std::hint::black_box(1));
        }
        assert!(x > 0);

        let stat = Stat::read("self").unwrap();

        assert_eq!(stat.parent, std::os::unix::process::parent_id());
        assert!(stat.own > 0.0, "{}", stat.own);
    }
}
