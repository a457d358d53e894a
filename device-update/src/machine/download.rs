//! The download: staging opened, chunks checked, written and made durable, requests for what is missing,
//! progress, and the hand-over to verification once every chunk is in.

use super::{Download, Install, Machine, Opening, Phase};
use crate::effects::{Action, Disk, Refusal};
use crate::progress::Progress;
use packaging::hex_sha256;
use protocol::update::{Announcement, ChunkRequest, UpdateState, UpdateStatus};
use std::collections::BTreeSet;
use std::time::{Duration, Instant};

/// Progress is published at most this often while downloading.
pub(super) const PROGRESS_INTERVAL: Duration = Duration::from_secs(1);
/// Staged chunks are made durable at least this often, and every [`PERSIST_CHUNKS`] chunks or request window,
/// whichever is smaller: a crash then loses at most two windows (one unsaved, one in flight).
pub(super) const PERSIST_INTERVAL: Duration = Duration::from_millis(500);
const PERSIST_CHUNKS: u32 = 32;

impl Machine {
    /// Makes chunks durable, asks again after a silence, and publishes progress, each when its time has come.
    pub(super) fn tick_download(&mut self, now: Instant, out: &mut Vec<Action>) {
        let Phase::Downloading(download) = &mut self.phase else { return };
        if download.unpersisted > 0 && now.saturating_duration_since(download.last_persist_at) >= PERSIST_INTERVAL {
            persist(download, now, out);
        }
        if now.saturating_duration_since(download.last_chunk_at) >= self.settings.config.request_timeout() {
            // Requests or chunks were lost (broker restart, pusher restart): ask again for what is missing.
            download.in_flight.clear();
            download.last_chunk_at = now;
            self.request_more(out);
        }
        if let Phase::Downloading(download) = &self.phase
            && now.saturating_duration_since(download.last_progress_at) >= PROGRESS_INTERVAL
        {
            self.publish_progress(now, out);
        }
    }

    /// Checks the free space and asks for the staging to be opened; `order` is the counter of the announcement,
    /// none when resuming at start.
    pub(super) fn start_download(
        &mut self,
        model: usize,
        announcement: Announcement,
        disk: &Disk,
        order: Option<u64>,
        out: &mut Vec<Action>,
    ) -> Result<(), Refusal> {
        let resuming = disk.staged.as_ref().is_some_and(|staged| staged.id == announcement.id);
        // Staging and the unpacked slot each hold the package once; a resumed download has its file already.
        let needed = announcement.size * if resuming { 1 } else { 2 } + self.settings.config.reserve_bytes;
        let available = disk.free_space.clone().map_err(|e| Refusal::failed(format!("checking free space: {e}")))?;
        if needed > available {
            return Err(Refusal::rejected(format!(
                "not enough free space: the package needs {needed} bytes (twice its {} bytes plus \
                 update.reserve_bytes), {available} are free",
                announcement.size
            )));
        }
        out.push(Action::OpenStaging(announcement.clone()));
        self.phase = Phase::Opening(Box::new(Opening { model, announcement, order }));
        Ok(())
    }

    pub(super) fn on_staging_opened(&mut self, result: Result<Progress, String>, now: Instant, out: &mut Vec<Action>) {
        let Phase::Opening(opening) = std::mem::replace(&mut self.phase, Phase::Idle) else { return };
        let Opening { model, announcement, order } = *opening;
        let progress = match result {
            Ok(progress) => progress,
            Err(e) => {
                let refusal = Refusal::failed(format!("staging the download: {e}"));
                if order.is_none() {
                    return log::warn!("The staged download cannot resume: {}.", refusal.reason);
                }
                return self.refuse_announcement(&announcement, refusal, order, out);
            }
        };
        let (update, version, resumed_bytes) =
            (announcement.id.as_str(), announcement.version.as_str(), progress.resumed_bytes());
        log::info!(update, version, resumed_bytes; "Downloading update.");
        self.phase = Phase::Downloading(Box::new(Download {
            model,
            announcement,
            order,
            progress,
            in_flight: BTreeSet::new(),
            last_chunk_at: now,
            last_persist_at: now,
            unpersisted: 0,
            last_progress_at: now,
        }));
        self.publish_progress(now, out);
        self.request_more(out);
        self.complete_if_done(now, out);
    }

    pub(super) fn on_chunk(&mut self, id: &str, index: u32, payload: Vec<u8>, out: &mut Vec<Action>) {
        let Phase::Downloading(download) = &mut self.phase else { return };
        if download.announcement.id != id {
            return;
        }
        download.in_flight.remove(&index);
        match download.progress.check(index, payload.len()) {
            Ok(true) if download.announcement.chunk_sha256.get(index as usize) != Some(&hex_sha256(&payload)) => {
                // Not what the operator signed: someone else answered our request. Ask again.
                log::warn!(update = id, chunk = index; "Chunk refused: it does not match its signed sha256.");
                self.after_chunk(out);
            }
            // The outcome, Event::ChunkWritten, goes on.
            Ok(true) => out.push(Action::WriteChunk { index, offset: download.progress.offset(index), bytes: payload }),
            Ok(false) => self.after_chunk(out),
            Err(e) => log::warn!(update = id, chunk = index; "Chunk refused: {e}."),
        }
    }

    pub(super) fn on_chunk_written(
        &mut self,
        index: u32,
        result: Result<(), String>,
        now: Instant,
        out: &mut Vec<Action>,
    ) {
        let Phase::Downloading(download) = &mut self.phase else { return };
        if let Err(e) = result {
            return log::warn!(update = download.announcement.id.as_str(), chunk = index; "Chunk not staged: {e}.");
        }
        download.progress.mark(index);
        download.last_chunk_at = now;
        download.unpersisted += 1;
        if download.unpersisted >= PERSIST_CHUNKS.min(self.settings.config.request_window) {
            persist(download, now, out);
        }
        self.after_chunk(out);
        self.complete_if_done(now, out);
    }

    /// Asks for more once half the requested chunks are in.
    pub(super) fn after_chunk(&mut self, out: &mut Vec<Action>) {
        let Phase::Downloading(download) = &self.phase else { return };
        if download.in_flight.len() <= self.settings.config.request_window as usize / 2 {
            self.request_more(out);
        }
    }

    /// Asks for missing chunks not yet asked for, up to the request window.
    pub(super) fn request_more(&mut self, out: &mut Vec<Action>) {
        let Phase::Downloading(download) = &mut self.phase else { return };
        let window = self.settings.config.request_window as usize;
        let wanted = window.saturating_sub(download.in_flight.len());
        if wanted == 0 {
            return;
        }
        let mut fresh = Vec::new();
        for [start, end] in download.progress.missing(window + download.in_flight.len()) {
            for index in start..end {
                if fresh.len() < wanted && !download.in_flight.contains(&index) {
                    fresh.push(index);
                }
            }
        }
        if fresh.is_empty() {
            return;
        }
        download.in_flight.extend(&fresh);
        let id = download.announcement.id.clone();
        out.push(Action::RequestChunks(ChunkRequest {
            id,
            device: self.settings.device.clone(),
            ranges: ranges(&fresh),
        }));
    }

    pub(super) fn publish_progress(&mut self, now: Instant, out: &mut Vec<Action>) {
        let Phase::Downloading(download) = &mut self.phase else { return };
        download.last_progress_at = now;
        if let Phase::Downloading(download) = &self.phase {
            out.push(Action::PublishStatus(self.progress_status(download)));
        }
    }

    /// The `downloading` status of `download`.
    pub(super) fn progress_status(&self, download: &Download) -> UpdateStatus {
        let announcement = &download.announcement;
        let bytes = download.progress.bytes_received();
        UpdateStatus {
            device: self.settings.device.clone(),
            state: UpdateState::Downloading,
            update_id: Some(announcement.id.clone()),
            model: announcement.name.clone(),
            version: announcement.version.clone(),
            running_version: self.models[download.model].running_version.clone(),
            bytes,
            size: announcement.size,
            percent: percent(bytes, announcement.size),
            resumed_bytes: download.progress.resumed_bytes(),
            reason: None,
            at_ms: 0,
            order: download.order,
            messages_dropped: 0,
            errors_unpublished: 0,
        }
    }

    /// A complete download goes on to verification: the package is checked, unpacked into the candidate slot,
    /// built for each worker and self-tested while the workers keep serving the old model.
    pub(super) fn complete_if_done(&mut self, now: Instant, out: &mut Vec<Action>) {
        let Phase::Downloading(download) = &mut self.phase else { return };
        if !download.progress.is_complete() {
            return;
        }
        persist(download, now, out);
        let Phase::Downloading(download) = std::mem::replace(&mut self.phase, Phase::Idle) else { return };
        let Download { model, announcement, order, .. } = *download;
        let id = Some(announcement.id.clone());
        let mut status = self.status_for(model, UpdateState::Verifying, id, announcement.version.clone(), None);
        status.order = order;
        status.bytes = announcement.size;
        status.size = announcement.size;
        status.percent = 100.0;
        out.push(Action::PublishStatus(status.clone()));
        out.push(Action::CheckPackage);
        let install = Install { model, announcement, status, candidate: None, providers: Vec::new() };
        self.phase = Phase::Installing(Box::new(install));
    }
}

/// Makes the chunks written so far durable, if there are any.
pub(super) fn persist(download: &mut Download, now: Instant, out: &mut Vec<Action>) {
    if download.unpersisted > 0 {
        out.push(Action::PersistStaging(download.progress.bitmap().to_vec()));
        download.unpersisted = 0;
        download.last_persist_at = now;
    }
}

/// Half-open ranges covering sorted `indices`.
pub(super) fn ranges(indices: &[u32]) -> Vec<[u32; 2]> {
    let mut ranges: Vec<[u32; 2]> = Vec::new();
    for &index in indices {
        match ranges.last_mut() {
            Some(last) if last[1] == index => last[1] += 1,
            _ => ranges.push([index, index + 1]),
        }
    }
    ranges
}

fn percent(bytes: u64, size: u64) -> f32 {
    if size == 0 { 0.0 } else { (bytes as f64 * 100.0 / size as f64) as f32 }
}
