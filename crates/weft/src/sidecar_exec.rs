//! `weft connect proxy|ingress` hands over to the `weft-sidecar` executable when one sits next to `weft`.
//!
//! A sidecar runs beside every service instance, so its resident memory is paid once per instance. Run from `weft`,
//! the proxy maps a share of the whole binary's code (agent, server, Raft, gossip, UI, CLI): ~10 MB resident when idle.
//! `weft-sidecar` holds only the proxy's code and idles at ~4-5 MB. The handover is an `exec`: same process id, same
//! arguments, same standard streams and signals, so callers (scripts, the demo, containers) see no difference.

use std::os::unix::process::CommandExt;

/// Replaces this process with `weft-sidecar` and the same arguments. Returns (having printed nothing) when there is
/// no such executable next to this one or it cannot be run; the caller then runs the proxy in-process.
pub fn replace_with_sidecar() {
    let Ok(me) = std::env::current_exe() else {
        return;
    };
    let sidecar = me.with_file_name(weft_sidecar::EXECUTABLE);
    if !sidecar.is_file() {
        return;
    }
    let error = std::process::Command::new(&sidecar)
        .arg0(weft_sidecar::EXECUTABLE)
        .args(std::env::args_os().skip(1))
        .exec();
    eprintln!(
        "warning: cannot run {} ({error}); running the proxy inside weft",
        sidecar.display()
    );
}
