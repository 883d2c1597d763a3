//! A blank volume's fill: zeros over all of it, flushed, then reported `Verified` (the
//! downloader is the app data disk's only writer, so it makes blank volumes too). An extent
//! reused from a deleted volume holds that volume's bytes until then: no app ever sees another
//! app's data.

use alloc::vec;

use kernel::block::BlockDevice;
use topics::downloader::{DownloadState, DownloadStatus};

use crate::engine::CHUNK;

/// Zeros `disk` (an extent); `report` sees the progress every `every` bytes and the end.
/// `cancelled` is asked between chunks.
pub async fn zero<D: BlockDevice>(
    disk: &mut D,
    mut status: DownloadStatus,
    every: u64,
    cancelled: &mut dyn FnMut() -> bool,
    report: &mut dyn FnMut(&DownloadStatus),
) -> DownloadStatus {
    let g = disk.geometry();
    let sector = u64::from(g.sector_size).max(1);
    let chunk = vec![0u8; CHUNK];
    status.total = g.bytes();
    status.bytes = 0;
    status.state = DownloadState::Downloading;
    report(&status);
    let mut at = 0u64;
    let mut since = 0u64;
    while at < status.total {
        if cancelled() {
            status.state = DownloadState::Pending;
            status.error = crate::engine::CANCELLED.into();
            return status;
        }
        let n = (status.total - at).min(CHUNK as u64) as usize;
        if let Err(e) = disk.write(at / sector, &chunk[..n]).await {
            status.state = DownloadState::Error;
            status.error = alloc::format!("target volume: {e}");
            report(&status);
            return status;
        }
        at += n as u64;
        since += n as u64;
        if since >= every || at == status.total {
            since = 0;
            status.bytes = at;
            report(&status);
        }
    }
    if let Err(e) = disk.flush().await {
        status.state = DownloadState::Error;
        status.error = alloc::format!("target volume: {e}");
    } else {
        status.state = DownloadState::Verified;
    }
    report(&status);
    status
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloc::vec::Vec;
    use kernel::block::{MemoryDisk, Window};

    fn ready<T>(f: impl core::future::Future<Output = T>) -> T {
        let mut cx = core::task::Context::from_waker(core::task::Waker::noop());
        match core::pin::pin!(f).poll(&mut cx) {
            core::task::Poll::Ready(v) => v,
            core::task::Poll::Pending => panic!("a memory disk never waits"),
        }
    }

    #[test]
    fn zeros_exactly_its_extent_and_reports_verified_last() {
        let mut disk = MemoryDisk::new(512, 1024);
        ready(disk.write(0, &[9u8; 512 * 1024])).unwrap();
        let mut seen = Vec::new();
        let end = {
            let mut w = Window::new(&mut disk, 512 * 100, 512 * 300).unwrap();
            ready(zero(
                &mut w,
                DownloadStatus::default(),
                CHUNK as u64,
                &mut || false,
                &mut |s| seen.push((s.state, s.bytes)),
            ))
        };
        assert_eq!(end.state, DownloadState::Verified);
        assert_eq!(end.bytes, 512 * 300);
        assert_eq!(seen.last(), Some(&(DownloadState::Verified, 512 * 300)));
        let mut all = vec![0u8; 512 * 1024];
        ready(disk.read(0, &mut all)).unwrap();
        assert!(all[..512 * 100].iter().all(|&b| b == 9));
        assert!(all[512 * 100..512 * 400].iter().all(|&b| b == 0));
        assert!(all[512 * 400..].iter().all(|&b| b == 9));
    }

    #[test]
    fn a_cancelled_fill_stops_and_is_not_verified() {
        let mut disk = MemoryDisk::new(512, 1024);
        let mut asked = 0;
        let end = ready(zero(
            &mut disk,
            DownloadStatus::default(),
            CHUNK as u64,
            &mut || {
                asked += 1;
                asked > 2
            },
            &mut |_| {},
        ));
        assert_eq!(end.state, DownloadState::Pending);
        assert_eq!(end.error, crate::engine::CANCELLED);
    }
}
