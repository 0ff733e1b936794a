//! The machine: what it is, how busy it is, how much memory a process holds.

use std::time::Duration;

/// A one-line description: CPU model, cores, memory, kernel, compiler.
pub fn machine() -> String {
    let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let model = cpuinfo
        .lines()
        .find_map(|l| l.strip_prefix("model name").and_then(|r| r.split_once(':')).map(|(_, m)| m.trim()))
        .unwrap_or("unknown CPU")
        .to_owned();
    let cores = std::thread::available_parallelism().map_or(0, |n| n.get());
    let mem_kib = std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|m| m.lines().find_map(|l| l.strip_prefix("MemTotal:").map(kib)))
        .unwrap_or(0);
    let kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default();
    let rustc = std::process::Command::new("rustc")
        .arg("--version")
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned())
        .unwrap_or_default();
    format!(
        "{model}, {cores} vCPU, {:.0} GiB RAM, Linux {}, {rustc}",
        mem_kib as f64 / (1 << 20) as f64,
        kernel.trim()
    )
}

fn kib(v: &str) -> u64 {
    v.trim().trim_end_matches("kB").trim().parse().unwrap_or(0)
}

/// CPU time counters: (idle, total), in ticks.
fn cpu_ticks() -> (u64, u64) {
    let stat = std::fs::read_to_string("/proc/stat").unwrap_or_default();
    let fields: Vec<u64> = stat
        .lines()
        .next()
        .unwrap_or_default()
        .split_whitespace()
        .skip(1)
        .filter_map(|f| f.parse().ok())
        .collect();
    let idle = fields.get(3).copied().unwrap_or(0) + fields.get(4).copied().unwrap_or(0);
    (idle, fields.iter().sum())
}

/// Percentage of CPU time idle over the next `window`, all cores.
pub fn cpu_idle(window: Duration) -> f64 {
    let (i0, t0) = cpu_ticks();
    std::thread::sleep(window);
    let (i1, t1) = cpu_ticks();
    if t1 == t0 { 100.0 } else { 100.0 * (i1 - i0) as f64 / (t1 - t0) as f64 }
}

/// Resident set size of this process, in KiB.
pub fn rss_kib() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| s.lines().find_map(|l| l.strip_prefix("VmRSS:").map(kib)))
        .unwrap_or(0)
}

/// CPU time (user + system) this process's threads have used so far, by
/// thread name, in clock ticks (`/proc/self/task/*/stat`): taken before and
/// after a measurement, it says which part of the process did the work.
pub fn thread_ticks() -> std::collections::BTreeMap<String, u64> {
    let mut by_name = std::collections::BTreeMap::new();
    let Ok(tasks) = std::fs::read_dir("/proc/self/task") else { return by_name };
    for task in tasks.flatten() {
        let Ok(stat) = std::fs::read_to_string(task.path().join("stat")) else { continue };
        // `pid (name) state ...`: the name may hold spaces and parentheses.
        let (Some(open), Some(close)) = (stat.find('('), stat.rfind(')')) else { continue };
        let fields: Vec<&str> = stat[close + 1..].split_whitespace().collect();
        let ticks = |i: usize| fields.get(i).and_then(|f| f.parse::<u64>().ok()).unwrap_or(0);
        // After the name: state is field 0, utime 11, stime 12.
        *by_name.entry(stat[open + 1..close].to_owned()).or_insert(0) += ticks(11) + ticks(12);
    }
    by_name
}

/// What each thread name used between two [`thread_ticks`] readings, in
/// milliseconds, busiest first (threads that ended in between are missed).
pub fn thread_ms(
    before: &std::collections::BTreeMap<String, u64>,
    after: &std::collections::BTreeMap<String, u64>,
) -> Vec<(String, u64)> {
    let tick_ms = 10; // USER_HZ is 100 on Linux.
    let mut used: Vec<(String, u64)> = after
        .iter()
        .map(|(name, t)| (name.clone(), t.saturating_sub(before.get(name).copied().unwrap_or(0)) * tick_ms))
        .filter(|(_, ms)| *ms > 0)
        .collect();
    used.sort_by_key(|(_, ms)| std::cmp::Reverse(*ms));
    used
}
