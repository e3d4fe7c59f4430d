//! File-system usage of one mount point: the only host figure /proc does not
//! hold, so the only place the sampler needs a system call.

use std::path::Path;

/// Space on one mounted file system, in bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct FsUsage {
    /// Bytes in use (all blocks minus free blocks, reserved ones included).
    pub(crate) used: u64,
    /// Bytes an unprivileged writer can still use (excludes the root reserve).
    pub(crate) available: u64,
}

impl FsUsage {
    /// Percent used the way `df` shows it: used / (used + available).
    ///
    /// The root reserve (5 % on ext4 by default) is left out of the
    /// denominator on purpose: applications hit "no space" when available
    /// reaches zero, so that moment must read 100 %, not 95 %.
    pub(crate) fn used_percent(&self) -> Option<f64> {
        let denom = self.used as f64 + self.available as f64;
        (denom > 0.0).then(|| self.used as f64 / denom * 100.0)
    }
}

/// Usage of the file system mounted at `mount_point`, or `None` if it cannot
/// be had. statvfs(3) through `nix`, since `unsafe` is forbidden here; block
/// counts are in units of the fragment size, not the block size.
// The `u64::from` calls are no-ops on 64-bit Linux, not on 32-bit targets.
#[allow(clippy::useless_conversion)]
pub(crate) fn fs_usage(mount_point: &Path) -> Option<FsUsage> {
    let st = nix::sys::statvfs::statvfs(mount_point).ok()?;
    let frag = u64::from(st.fragment_size());
    let blocks = u64::from(st.blocks());
    let free = u64::from(st.blocks_free());
    let avail = u64::from(st.blocks_available());
    Some(FsUsage {
        used: blocks.saturating_sub(free).saturating_mul(frag),
        available: avail.saturating_mul(frag),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn used_percent_excludes_root_reserve() {
        let u = FsUsage {
            used: 75,
            available: 25,
        };
        assert_eq!(u.used_percent(), Some(75.0));
        let empty = FsUsage {
            used: 0,
            available: 0,
        };
        assert_eq!(empty.used_percent(), None);
    }

    #[test]
    fn root_is_measured() {
        let u = fs_usage(Path::new("/")).expect("statvfs of /");
        let pct = u.used_percent().unwrap();
        assert!(u.used > 0 && (0.0..=100.0).contains(&pct), "{u:?}");
    }
}
