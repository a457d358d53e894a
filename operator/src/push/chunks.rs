//! Which chunks to publish next. Devices pull: each asks for the ranges it lacks, and in a group transfer several
//! may ask for the same chunk at once, so a chunk already waiting, or published on the same base moments ago, is
//! not queued again.

use std::collections::{HashMap, HashSet, VecDeque};
use std::time::{Duration, Instant};

/// On a base shared by several devices, a chunk published this recently is not published again for another
/// request: the device that asked is subscribed and gets that copy, or asks again later. A base with one device
/// has no such window: a repeated request there means the copy was lost (the device restarted).
pub const DUPLICATE_WINDOW: Duration = Duration::from_secs(1);

/// The chunks still to publish on one base.
#[derive(Debug)]
pub struct ChunkQueue {
    chunk_count: u32,
    queue: VecDeque<u32>,
    queued: HashSet<u32>,
    published_at: HashMap<u32, Instant>,
    duplicate_window: Duration,
}

impl ChunkQueue {
    /// A queue that does not publish a chunk again within `duplicate_window` of publishing it.
    pub fn new(chunk_count: u32, duplicate_window: Duration) -> ChunkQueue {
        ChunkQueue {
            chunk_count,
            queue: VecDeque::new(),
            queued: HashSet::new(),
            published_at: HashMap::new(),
            duplicate_window,
        }
    }

    /// Queues the chunks of the half-open `ranges` that exist and are neither queued nor published within
    /// the duplicate window before `now`. Returns how many it queued.
    pub fn request(&mut self, ranges: &[[u32; 2]], now: Instant) -> usize {
        let mut added = 0;
        for &[start, end] in ranges {
            for index in start..end.min(self.chunk_count) {
                let recent =
                    self.published_at.get(&index).is_some_and(|at| now.duration_since(*at) < self.duplicate_window);
                if !recent && self.queued.insert(index) {
                    self.queue.push_back(index);
                    added += 1;
                }
            }
        }
        added
    }

    /// The next chunk to publish; call [`ChunkQueue::published`] once it is.
    pub fn next(&mut self) -> Option<u32> {
        let index = self.queue.pop_front()?;
        self.queued.remove(&index);
        Some(index)
    }

    pub fn published(&mut self, index: u32, now: Instant) {
        self.published_at.insert(index, now);
    }

    pub fn is_empty(&self) -> bool {
        self.queue.is_empty()
    }
}

/// Chunks published over a whole push.
#[derive(Debug, Default)]
pub struct ChunkCounts {
    pub total: u64,
    distinct: HashSet<u32>,
}

impl ChunkCounts {
    pub fn count(&mut self, index: u32) {
        self.total += 1;
        self.distinct.insert(index);
    }

    /// Different chunk indices published, on any base.
    pub fn distinct(&self) -> usize {
        self.distinct.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn drain(queue: &mut ChunkQueue, now: Instant) -> Vec<u32> {
        let mut published = Vec::new();
        while let Some(index) = queue.next() {
            queue.published(index, now);
            published.push(index);
        }
        published
    }

    #[test]
    fn requests_are_queued_once_and_clipped_to_the_package() {
        let now = Instant::now();
        let mut queue = ChunkQueue::new(10, DUPLICATE_WINDOW);
        assert_eq!(queue.request(&[[0, 3], [8, 40]], now), 5);
        // A second device asking for overlapping chunks before they went out adds only the new ones.
        assert_eq!(queue.request(&[[2, 5]], now), 2);
        // Empty and reversed ranges ask for nothing.
        assert_eq!(queue.request(&[[4, 4], [7, 6]], now), 0);
        assert_eq!(drain(&mut queue, now), vec![0, 1, 2, 8, 9, 3, 4]);
        assert!(queue.is_empty());
    }

    #[test]
    fn recently_published_chunks_are_skipped() {
        let start = Instant::now();
        let mut queue = ChunkQueue::new(4, DUPLICATE_WINDOW);
        queue.request(&[[0, 2]], start);
        assert_eq!(drain(&mut queue, start), vec![0, 1]);

        let soon = start + Duration::from_millis(500);
        assert_eq!(queue.request(&[[0, 4]], soon), 2);
        assert_eq!(drain(&mut queue, soon), vec![2, 3]);

        // Past the window a device that still lacks chunk 0 gets it again; 2 and 3 are still recent.
        let later = start + DUPLICATE_WINDOW;
        assert_eq!(queue.request(&[[0, 4]], later), 2);
        assert_eq!(drain(&mut queue, later), vec![0, 1]);
    }

    #[test]
    fn counts_total_and_distinct() {
        let mut counts = ChunkCounts::default();
        for index in [0, 1, 1, 2, 0] {
            counts.count(index);
        }
        assert_eq!((counts.total, counts.distinct()), (5, 3));
    }
}
