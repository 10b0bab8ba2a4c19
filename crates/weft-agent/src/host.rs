//! `/v1/agent/host`: what Consul's agent reports about its host (gopsutil's field names): memory, CPUs, host and
//! kernel, and the disk holding the data dir. Read from the kernel (uname, sysinfo, statvfs) and /proc; a part that
//! cannot be read is left out and named in `Errors`, as Consul does, rather than failing the whole answer.

use serde_json::{json, Map, Value};
use std::path::Path;
use std::time::{SystemTime, UNIX_EPOCH};

fn text(c: &std::ffi::CStr) -> String {
    c.to_string_lossy().into_owned()
}

fn percent(part: u64, whole: u64) -> f64 {
    if whole == 0 {
        0.0
    } else {
        part as f64 * 100.0 / whole as f64
    }
}

/// `/proc/meminfo` values in bytes, by name.
fn meminfo() -> std::io::Result<Map<String, Value>> {
    let raw = std::fs::read_to_string("/proc/meminfo")?;
    let kb = |name: &str| -> u64 {
        raw.lines()
            .find_map(|l| l.strip_prefix(name)?.strip_prefix(':'))
            .and_then(|v| v.split_whitespace().next()?.parse::<u64>().ok())
            .unwrap_or(0)
            * 1024
    };
    let total = kb("MemTotal");
    let available = kb("MemAvailable");
    let free = kb("MemFree");
    let used = total.saturating_sub(available);
    let mut m = Map::new();
    m.insert("total".into(), json!(total));
    m.insert("available".into(), json!(available));
    m.insert("used".into(), json!(used));
    m.insert("usedPercent".into(), json!(percent(used, total)));
    m.insert("free".into(), json!(free));
    m.insert("buffers".into(), json!(kb("Buffers")));
    m.insert("cached".into(), json!(kb("Cached")));
    m.insert("swapTotal".into(), json!(kb("SwapTotal")));
    m.insert("swapFree".into(), json!(kb("SwapFree")));
    Ok(m)
}

/// One entry per logical CPU from `/proc/cpuinfo`.
fn cpus() -> std::io::Result<Vec<Value>> {
    let raw = std::fs::read_to_string("/proc/cpuinfo")?;
    let mut out = Vec::new();
    for block in raw.split("\n\n").filter(|b| !b.trim().is_empty()) {
        let field = |name: &str| -> String {
            block
                .lines()
                .find_map(|l| {
                    let (k, v) = l.split_once(':')?;
                    (k.trim() == name).then(|| v.trim().to_string())
                })
                .unwrap_or_default()
        };
        let number = |name: &str| field(name).parse::<f64>().unwrap_or(0.0);
        let cache_kb = field("cache size")
            .split_whitespace()
            .next()
            .and_then(|v| v.parse::<u64>().ok())
            .unwrap_or(0);
        out.push(json!({
            "cpu": number("processor") as u64,
            "vendorId": field("vendor_id"),
            "family": field("cpu family"),
            "model": field("model"),
            "stepping": number("stepping") as u64,
            "physicalId": field("physical id"),
            "coreId": field("core id"),
            "cores": 1,
            "modelName": field("model name"),
            "mhz": number("cpu MHz"),
            "cacheSize": cache_kb,
            "flags": field("flags").split_whitespace().collect::<Vec<_>>(),
            "microcode": field("microcode"),
        }));
    }
    Ok(out)
}

/// `/etc/os-release`'s ID and VERSION_ID.
fn os_release() -> (String, String) {
    let raw = std::fs::read_to_string("/etc/os-release").unwrap_or_default();
    let get = |key: &str| {
        raw.lines()
            .find_map(|l| l.strip_prefix(key)?.strip_prefix('='))
            .map(|v| v.trim_matches('"').to_string())
            .unwrap_or_default()
    };
    (get("ID"), get("VERSION_ID"))
}

fn host(now: u64) -> Value {
    let uname = rustix::system::uname();
    let info = rustix::system::sysinfo();
    let uptime = u64::try_from(info.uptime).unwrap_or(0);
    let (platform, version) = os_release();
    let host_id = std::fs::read_to_string("/etc/machine-id")
        .or_else(|_| std::fs::read_to_string("/proc/sys/kernel/random/boot_id"))
        .map(|s| s.trim().to_string())
        .unwrap_or_default();
    json!({
        "hostname": text(uname.nodename()),
        "uptime": uptime,
        "bootTime": now.saturating_sub(uptime),
        "procs": info.procs,
        "os": "linux",
        "platform": platform,
        "platformFamily": "",
        "platformVersion": version,
        "kernelVersion": text(uname.release()),
        "kernelArch": text(uname.machine()),
        "virtualizationSystem": "",
        "virtualizationRole": "",
        "hostid": host_id,
    })
}

fn disk(path: &Path) -> std::io::Result<Value> {
    let st = rustix::fs::statvfs(path)?;
    let block = st.f_frsize.max(1);
    let total = st.f_blocks * block;
    let free = st.f_bavail * block;
    let used = total.saturating_sub(st.f_bfree * block);
    let inodes_used = st.f_files.saturating_sub(st.f_ffree);
    Ok(json!({
        "path": path.display().to_string(),
        "fstype": "",
        "total": total,
        "free": free,
        "used": used,
        "usedPercent": percent(used, used + free),
        "inodesTotal": st.f_files,
        "inodesUsed": inodes_used,
        "inodesFree": st.f_ffree,
        "inodesUsedPercent": percent(inodes_used, st.f_files),
    }))
}

/// The whole answer. `data_dir` is the disk reported (the root when the agent keeps no data dir).
pub fn report(data_dir: Option<&Path>) -> Value {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default();
    let mut errors = Vec::new();
    let mut part = |what: &str, r: std::io::Result<Value>| match r {
        Ok(v) => v,
        Err(e) => {
            errors.push(format!("{what}: {e}"));
            Value::Null
        }
    };
    let memory = part("memory", meminfo().map(Value::Object));
    let cpu = part("cpu", cpus().map(Value::Array));
    let disk = part("disk", disk(data_dir.unwrap_or(Path::new("/"))));
    json!({
        "Memory": memory,
        "CPU": cpu,
        "Host": host(now.as_secs()),
        "Disk": disk,
        "CollectionTime": now.as_nanos().min(u64::MAX as u128) as u64,
        "Errors": if errors.is_empty() { Value::Null } else { json!(errors) },
    })
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn the_report_describes_this_machine() {
        let dir = std::env::temp_dir();
        let r = report(Some(&dir));
        assert_eq!(r["Errors"], Value::Null, "{r}");
        assert!(r["Memory"]["total"].as_u64().unwrap() > 0);
        assert!(
            r["Memory"]["available"].as_u64().unwrap() <= r["Memory"]["total"].as_u64().unwrap()
        );
        let cpus = r["CPU"].as_array().unwrap();
        assert!(!cpus.is_empty() && cpus[0]["modelName"].is_string(), "{r}");
        assert_eq!(r["Host"]["os"], "linux");
        assert!(!r["Host"]["hostname"].as_str().unwrap().is_empty());
        assert!(r["Host"]["uptime"].as_u64().unwrap() > 0);
        assert_eq!(r["Disk"]["path"], dir.display().to_string());
        assert!(r["Disk"]["total"].as_u64().unwrap() >= r["Disk"]["free"].as_u64().unwrap());
        let missing = report(Some(Path::new("/nonexistent/weft")));
        assert!(missing["Errors"][0].as_str().unwrap().starts_with("disk: "));
        assert_eq!(missing["Disk"], Value::Null);
    }
}
