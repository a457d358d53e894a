//! Greedy non-maximum suppression: walk the candidates best first and keep each one that does not overlap a box
//! already kept by more than the IoU threshold.

use protocol::BoundingBox;
use std::cmp::Ordering;

/// A box before suppression, in whatever coordinates the decoder works in.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Candidate {
    /// The box corners.
    pub bbox: BoundingBox,
    /// Confidence; higher ranks first.
    pub score: f32,
    /// The class, for [`Suppression::SameClass`].
    pub class_index: u32,
}

/// Which overlapping boxes suppress each other.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Suppression {
    /// Any two boxes, whatever their class (one object per place).
    AnyClass,
    /// Only boxes of the same class (class-aware NMS).
    SameClass,
}

impl Suppression {
    /// True when `kept` suppresses `other` at `iou_threshold`.
    fn suppresses(self, kept: &Candidate, other: &Candidate, iou_threshold: f32) -> bool {
        let in_scope = match self {
            Suppression::AnyClass => true,
            Suppression::SameClass => kept.class_index == other.class_index,
        };
        in_scope && kept.bbox.iou(&other.bbox) > iou_threshold
    }
}

/// The rank order of candidates: score descending, then lower index first. `total_cmp` makes it a total order
/// even with NaN scores (which the decoders filter out before).
pub(crate) fn best_first(scores: impl Fn(usize) -> f32) -> impl Fn(&usize, &usize) -> Ordering {
    move |a, b| scores(*b).total_cmp(&scores(*a)).then(a.cmp(b))
}

/// Fills `kept` with the indices into `candidates` that survive suppression, best first, at most
/// `max_detections` of them. A box is suppressed when its IoU with a kept, better-ranked box in scope is above
/// `iou_threshold`. `kept` is the caller's buffer, so repeated calls do not allocate once it has grown.
pub fn non_max_suppression(
    candidates: &[Candidate],
    iou_threshold: f32,
    max_detections: usize,
    suppression: Suppression,
    kept: &mut Vec<usize>,
) {
    kept.clear();
    kept.extend(0..candidates.len());
    kept.sort_unstable_by(best_first(|i| candidates[i].score));

    // Compact in place: the first `kept_count` slots hold the survivors, and a slot is only overwritten after
    // the walk has read it (kept_count <= rank).
    let mut kept_count = 0;
    for rank in 0..kept.len() {
        if kept_count == max_detections {
            break;
        }
        let candidate = &candidates[kept[rank]];
        let survives = kept[..kept_count]
            .iter()
            .all(|&better| !suppression.suppresses(&candidates[better], candidate, iou_threshold));
        if survives {
            kept[kept_count] = kept[rank];
            kept_count += 1;
        }
    }
    kept.truncate(kept_count);
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn candidate(x_min: f32, y_min: f32, x_max: f32, y_max: f32, score: f32, class_index: u32) -> Candidate {
        Candidate { bbox: BoundingBox { x_min, y_min, x_max, y_max }, score, class_index }
    }

    fn run(candidates: &[Candidate], iou: f32, max: usize, suppression: Suppression) -> Vec<usize> {
        let mut kept = Vec::new();
        non_max_suppression(candidates, iou, max, suppression, &mut kept);
        kept
    }

    /// The textbook formulation: sort, then each kept box marks every later overlapping box as suppressed.
    fn reference(candidates: &[Candidate], iou: f32, max: usize, suppression: Suppression) -> Vec<usize> {
        let mut order: Vec<usize> = (0..candidates.len()).collect();
        order.sort_by(|&a, &b| candidates[b].score.partial_cmp(&candidates[a].score).unwrap()); // stable
        let mut suppressed = vec![false; candidates.len()];
        let mut kept = Vec::new();
        for (rank, &i) in order.iter().enumerate() {
            if suppressed[i] {
                continue;
            }
            if kept.len() == max {
                break;
            }
            kept.push(i);
            for &j in &order[rank + 1..] {
                let same_class = candidates[i].class_index == candidates[j].class_index;
                let in_scope = suppression == Suppression::AnyClass || same_class;
                if in_scope && candidates[i].bbox.iou(&candidates[j].bbox) > iou {
                    suppressed[j] = true;
                }
            }
        }
        kept
    }

    #[test]
    fn identical_boxes_keep_the_best_and_the_lower_index_on_ties() {
        let boxes = [
            candidate(0.0, 0.0, 10.0, 10.0, 0.5, 0),
            candidate(0.0, 0.0, 10.0, 10.0, 0.9, 0),
            candidate(0.0, 0.0, 10.0, 10.0, 0.9, 0),
        ];
        assert_eq!(run(&boxes, 0.5, 10, Suppression::AnyClass), vec![1]);
        // IoU of identical boxes is 1, which no threshold below 1 lets through.
        assert_eq!(run(&boxes, 0.99, 10, Suppression::AnyClass), vec![1]);
        assert_eq!(run(&boxes, 1.0, 10, Suppression::AnyClass), vec![1, 2, 0]);
    }

    #[test]
    fn disjoint_boxes_all_survive_in_score_order_up_to_the_cap() {
        let boxes = [
            candidate(0.0, 0.0, 1.0, 1.0, 0.2, 0),
            candidate(5.0, 5.0, 6.0, 6.0, 0.7, 1),
            candidate(10.0, 0.0, 12.0, 2.0, 0.4, 0),
        ];
        assert_eq!(run(&boxes, 0.0, 10, Suppression::AnyClass), vec![1, 2, 0]);
        assert_eq!(run(&boxes, 0.0, 2, Suppression::AnyClass), vec![1, 2]);
        assert_eq!(run(&boxes, 0.0, 0, Suppression::AnyClass), Vec::<usize>::new());
        assert_eq!(run(&[], 0.5, 10, Suppression::AnyClass), Vec::<usize>::new());
    }

    #[test]
    fn overlap_exactly_at_the_threshold_is_not_suppressed() {
        // Intersection 2, union 4: IoU is exactly 0.5 in f32.
        let boxes = [candidate(0.0, 0.0, 3.0, 1.0, 0.9, 0), candidate(1.0, 0.0, 4.0, 1.0, 0.8, 0)];
        assert_eq!(boxes[0].bbox.iou(&boxes[1].bbox), 0.5);
        assert_eq!(run(&boxes, 0.5, 10, Suppression::AnyClass), vec![0, 1]);
        assert_eq!(run(&boxes, 0.49, 10, Suppression::AnyClass), vec![0]);
    }

    #[test]
    fn class_aware_suppression_ignores_other_classes() {
        let boxes = [
            candidate(0.0, 0.0, 10.0, 10.0, 0.9, 0),
            candidate(1.0, 0.0, 11.0, 10.0, 0.8, 1),
            candidate(1.0, 1.0, 10.0, 10.0, 0.7, 0),
        ];
        assert_eq!(run(&boxes, 0.5, 10, Suppression::SameClass), vec![0, 1]);
        assert_eq!(run(&boxes, 0.5, 10, Suppression::AnyClass), vec![0]);
    }

    #[test]
    fn a_suppressed_box_does_not_suppress_others() {
        // 1 overlaps 0 and 2, but 1 goes (suppressed by 0), so 2 stays although it overlaps 1.
        let boxes = [
            candidate(0.0, 0.0, 10.0, 10.0, 0.9, 0),
            candidate(4.0, 0.0, 14.0, 10.0, 0.8, 0),
            candidate(8.0, 0.0, 18.0, 10.0, 0.7, 0),
        ];
        assert_eq!(run(&boxes, 0.3, 10, Suppression::AnyClass), vec![0, 2]);
    }

    fn candidates() -> impl Strategy<Value = Vec<Candidate>> {
        // Small integer grid and few score levels, so overlaps and ties are common.
        let one = (0u8..16, 0u8..16, 1u8..8, 1u8..8, 0u8..6, 0u32..3).prop_map(|(x, y, w, h, s, c)| {
            let (x, y) = (f32::from(x), f32::from(y));
            candidate(x, y, x + f32::from(w), y + f32::from(h), f32::from(s) / 5.0, c)
        });
        proptest::collection::vec(one, 0..40)
    }

    fn scope() -> impl Strategy<Value = Suppression> {
        prop_oneof![Just(Suppression::AnyClass), Just(Suppression::SameClass)]
    }

    proptest! {
        #[test]
        fn matches_the_reference_and_its_properties(
            boxes in candidates(),
            iou in prop_oneof![Just(0.0f32), Just(0.5), Just(1.0), 0.0f32..1.0],
            max in 0usize..50,
            suppression in scope(),
        ) {
            let kept = run(&boxes, iou, max, suppression);
            prop_assert_eq!(&kept, &reference(&boxes, iou, max, suppression));
            prop_assert!(kept.len() <= max);

            for (n, &a) in kept.iter().enumerate() {
                for &b in &kept[n + 1..] {
                    let in_scope = suppression == Suppression::AnyClass
                        || boxes[a].class_index == boxes[b].class_index;
                    prop_assert!(!in_scope || boxes[a].bbox.iou(&boxes[b].bbox) <= iou);
                    // Sorted by score; ties by lower index.
                    prop_assert!(boxes[a].score > boxes[b].score || (boxes[a].score == boxes[b].score && a < b));
                }
            }

            // Every box left out ranks below the last kept one (cut by the cap) or is suppressed by a kept
            // box that ranks above it.
            let ranks_above = |a: usize, b: usize| {
                boxes[a].score > boxes[b].score || (boxes[a].score == boxes[b].score && a < b)
            };
            let cap_reached = kept.len() == max;
            for dropped in (0..boxes.len()).filter(|i| !kept.contains(i)) {
                let suppressed = kept.iter().any(|&k| {
                    ranks_above(k, dropped) && suppression.suppresses(&boxes[k], &boxes[dropped], iou)
                });
                let cut = cap_reached && kept.last().is_none_or(|&last| ranks_above(last, dropped));
                prop_assert!(suppressed || cut, "box {} dropped without cause", dropped);
            }
        }
    }
}
