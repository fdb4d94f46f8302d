//! Dropping privileges once the interfaces are open.
//!
//! - Started as root with `--user NAME[:GROUP]`: supplementary groups of
//!   NAME (initgroups), then the group (GROUP, else NAME's primary group),
//!   then the user. Afterwards `setuid(0)` must fail, or pinwatch stops.
//! - Started as a non-root user with capabilities (systemd
//!   `AmbientCapabilities=CAP_NET_RAW CAP_NET_ADMIN`, or file capabilities):
//!   every capability is cleared (ambient, inheritable, effective,
//!   permitted), so the process keeps its open capture handles and nothing
//!   else.
//!
//! Must run before any thread is started: capability sets are per thread.

use anyhow::{bail, Context};
use nix::unistd::{Gid, Group, Uid, User};

/// What was done, for the log.
pub fn drop_privileges(user: Option<&str>) -> anyhow::Result<String> {
    let mut done = Vec::new();
    if let Some(spec) = user {
        let (name, group) = match spec.split_once(':') {
            Some((u, g)) => (u, Some(g)),
            None => (spec, None),
        };
        if !Uid::effective().is_root() {
            bail!("--user {spec}: pinwatch must be started as root to change user");
        }
        let u = User::from_name(name)
            .with_context(|| format!("--user: looking up {name}"))?
            .with_context(|| format!("--user: no user {name}"))?;
        let gid = match group {
            Some(g) => {
                Group::from_name(g)
                    .with_context(|| format!("--user: looking up group {g}"))?
                    .with_context(|| format!("--user: no group {g}"))?
                    .gid
            }
            None => u.gid,
        };
        let cname = std::ffi::CString::new(name).context("--user: bad name")?;
        nix::unistd::initgroups(&cname, gid).context("initgroups")?;
        nix::unistd::setgid(gid).context("setgid")?;
        nix::unistd::setuid(u.uid).context("setuid")?;
        if nix::unistd::setuid(Uid::from_raw(0)).is_ok() || nix::unistd::setgid(Gid::from_raw(0)).is_ok() && u.gid.as_raw() != 0 {
            bail!("--user {spec}: root privileges could be regained; stopping");
        }
        done.push(format!("now uid {} gid {}", u.uid, gid));
    }
    if !Uid::effective().is_root() {
        // Capabilities a non-root process may still hold (ambient from systemd,
        // file capabilities): give them all up.
        let mut cleared = true;
        // Ambient first (kernels before 4.3 have none: not an error).
        let _ = caps::clear(None, caps::CapSet::Ambient);
        for set in [caps::CapSet::Inheritable, caps::CapSet::Effective, caps::CapSet::Permitted] {
            if caps::clear(None, set).is_err() {
                cleared = false;
            }
        }
        if !cleared {
            bail!("could not clear the process capabilities after opening the interfaces");
        }
        done.push("capabilities cleared".to_string());
    } else {
        done.push("still root (use --user to drop privileges)".to_string());
    }
    Ok(done.join(", "))
}
