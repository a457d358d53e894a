//! DBNet text detection (PaddleOCR's detectors): a `[1, 1, h, w]` text probability map at the input's
//! resolution to rotated boxes, as PaddleOCR's `DBPostProcess` (score mode `fast`) does it:
//!
//! 1. pixels over `threshold` are text (optionally dilated by a 2x2 square, as `use_dilation`);
//! 2. each 8-connected region gives the minimum-area rectangle around its pixel centres (OpenCV's
//!    `findContours` then `minAreaRect`), regions with a side under 3 pixels dropped;
//! 3. its score is the mean probability inside that rectangle, kept from `box_threshold` up;
//! 4. the rectangle grows by `area * unclip_ratio / perimeter` on every side (what pyclipper's round offset,
//!    then `minAreaRect`, gives for a rectangle), a side under 5 pixels dropped;
//! 5. corners go to source pixels, clamped into the image, and boxes with a side of 3 pixels or less dropped.
//!
//! The contour tracing and rectangle fitting are written here (a convex hull and rotating calipers over the
//! run ends of each region): a few dozen lines, where an image-processing crate would bring its own image types.

use super::shape;
use crate::error::Result;
use crate::manifest::DbnetSpec;
use crate::preprocess::Geometry;
use crate::tensor::Outputs;
use protocol::{BoundingBox, Detection, Output, Point};

const EXPECTED: &str = "[1, 1, h, w]";
/// Regions whose rectangle has a shorter side than this, in map pixels, are dropped (PaddleOCR's `min_size`).
const MIN_SIDE: f64 = 3.0;
/// The label of the detections when the bundle has none.
const TEXT: &str = "text";

/// Pixel states of the binary map while regions are collected.
const BACKGROUND: u8 = 0;
const UNVISITED: u8 = 1;
const VISITED: u8 = 2;

/// A rectangle at any angle: centre, unit axes and half side lengths.
#[derive(Debug, Clone, Copy, PartialEq)]
struct Rotated {
    centre: [f64; 2],
    axis_u: [f64; 2],
    axis_v: [f64; 2],
    half_u: f64,
    half_v: f64,
}

impl Rotated {
    fn shorter_side(&self) -> f64 {
        2.0 * self.half_u.min(self.half_v)
    }

    fn corners(&self) -> [[f64; 2]; 4] {
        let [cx, cy] = self.centre;
        let at = |su: f64, sv: f64| {
            let (u, v) = (su * self.half_u, sv * self.half_v);
            [cx + u * self.axis_u[0] + v * self.axis_v[0], cy + u * self.axis_u[1] + v * self.axis_v[1]]
        };
        [at(-1.0, -1.0), at(1.0, -1.0), at(1.0, 1.0), at(-1.0, 1.0)]
    }

    /// Grown by `distance` on every side.
    fn grown(self, distance: f64) -> Rotated {
        Rotated { half_u: self.half_u + distance, half_v: self.half_v + distance, ..self }
    }
}

/// Decodes a DBNet probability map with reusable buffers.
#[derive(Debug)]
pub(super) struct DbnetDecoder {
    spec: DbnetSpec,
    /// One state per map pixel.
    pixels: Vec<u8>,
    stack: Vec<usize>,
    /// The run ends of one region (the only pixels that can be hull vertices).
    run_ends: Vec<[i64; 2]>,
    hull: Vec<[i64; 2]>,
}

impl DbnetDecoder {
    pub(super) fn new(spec: &DbnetSpec) -> Self {
        DbnetDecoder {
            spec: spec.clone(),
            pixels: Vec::new(),
            stack: Vec::new(),
            run_ends: Vec::new(),
            hull: Vec::new(),
        }
    }

    /// The name of the tensor errors about the whole decoder refer to.
    pub(super) fn tensor(&self) -> &str {
        &self.spec.tensor
    }

    pub(super) fn decode(&mut self, outputs: &Outputs, labels: &[String], geometry: &Geometry) -> Result<Output> {
        let tensor = outputs.get(&self.spec.tensor)?;
        let [height, width] = match shape::dims::<4>(tensor, EXPECTED)? {
            [1, 1, height, width] => [height, width],
            _ => return Err(shape::shape_error(tensor, EXPECTED)),
        };
        let map = tensor.data();
        self.binarize(map, width, height);
        let label = labels.first().map_or(TEXT, String::as_str);
        let mut detections = Vec::new();
        let mut regions = 0;
        for start in 0..map.len() {
            if self.pixels[start] != UNVISITED {
                continue;
            }
            if regions == self.spec.max_detections {
                break;
            }
            regions += 1;
            self.collect_region(start, width, height);
            convex_hull(&mut self.run_ends, &mut self.hull);
            let Some(rectangle) = min_area_rectangle(&self.hull) else { continue };
            if rectangle.shorter_side() < MIN_SIDE {
                continue;
            }
            let score = mean_inside(map, width, height, &rectangle.corners());
            if score < self.spec.box_threshold {
                continue;
            }
            let [u, v] = [2.0 * rectangle.half_u, 2.0 * rectangle.half_v];
            let distance = u * v * f64::from(self.spec.unclip_ratio) / (2.0 * (u + v));
            let grown = rectangle.grown(distance);
            if grown.shorter_side() < MIN_SIDE + 2.0 {
                continue;
            }
            if let Some(detection) = to_source(&grown, geometry, score, label) {
                detections.push(detection);
            }
        }
        detections.sort_by(|a, b| b.score.total_cmp(&a.score));
        Ok(Output::Detection { detections })
    }

    /// Marks the text pixels: over the threshold, or (dilating) next to one above or to the left, as OpenCV's
    /// `dilate` with a 2x2 kernel anchored at its bottom-right cell.
    fn binarize(&mut self, map: &[f32], width: usize, height: usize) {
        let threshold = self.spec.threshold;
        self.pixels.clear();
        self.pixels.extend(map.iter().map(|&p| if p > threshold { UNVISITED } else { BACKGROUND }));
        if !self.spec.dilate {
            return;
        }
        // Bottom-right to top-left, so that every pixel reads its neighbours before they are dilated.
        for y in (0..height).rev() {
            for x in (0..width).rev() {
                let at = |dx: usize, dy: usize| map[(y - dy) * width + x - dx] > threshold;
                let left = x > 0 && at(1, 0);
                let up = y > 0 && (at(0, 1) || (x > 0 && at(1, 1)));
                if left || up {
                    self.pixels[y * width + x] = UNVISITED;
                }
            }
        }
    }

    /// Visits the 8-connected region of `start`, keeping the ends of its horizontal runs in `run_ends`.
    fn collect_region(&mut self, start: usize, width: usize, height: usize) {
        self.run_ends.clear();
        self.stack.clear();
        self.stack.push(start);
        self.pixels[start] = VISITED;
        while let Some(index) = self.stack.pop() {
            let (x, y) = (index % width, index / width);
            let text = |pixels: &[u8], x: usize| pixels[y * width + x] != BACKGROUND;
            if x == 0 || x + 1 == width || !text(&self.pixels, x - 1) || !text(&self.pixels, x + 1) {
                self.run_ends.push([x as i64, y as i64]);
            }
            for ny in y.saturating_sub(1)..=(y + 1).min(height - 1) {
                for nx in x.saturating_sub(1)..=(x + 1).min(width - 1) {
                    let neighbour = ny * width + nx;
                    if self.pixels[neighbour] == UNVISITED {
                        self.pixels[neighbour] = VISITED;
                        self.stack.push(neighbour);
                    }
                }
            }
        }
    }
}

/// The convex hull of `points` (sorted in place), counter-clockwise in image coordinates, into `hull`
/// (Andrew's monotone chain; collinear points dropped).
fn convex_hull(points: &mut [[i64; 2]], hull: &mut Vec<[i64; 2]>) {
    hull.clear();
    points.sort_unstable();
    let cross = |o: [i64; 2], a: [i64; 2], b: [i64; 2]| (a[0] - o[0]) * (b[1] - o[1]) - (a[1] - o[1]) * (b[0] - o[0]);
    let chain = |point: [i64; 2], floor: usize, hull: &mut Vec<[i64; 2]>| {
        while hull.len() >= floor + 2 && cross(hull[hull.len() - 2], hull[hull.len() - 1], point) <= 0 {
            hull.pop();
        }
        hull.push(point);
    };
    for &point in points.iter() {
        chain(point, 0, hull);
    }
    let lower = hull.len().saturating_sub(1);
    for &point in points.iter().rev().skip(1) {
        chain(point, lower, hull);
    }
    hull.pop();
}

/// The smallest-area rectangle around `hull` (rotating calipers: one side lies on a hull edge); `None` for
/// fewer than three hull points, whose rectangle has no area.
fn min_area_rectangle(hull: &[[i64; 2]]) -> Option<Rotated> {
    if hull.len() < 3 {
        return None;
    }
    let mut best: Option<(f64, Rotated)> = None;
    for (i, a) in hull.iter().enumerate() {
        let b = hull[(i + 1) % hull.len()];
        let (dx, dy) = ((b[0] - a[0]) as f64, (b[1] - a[1]) as f64);
        let length = dx.hypot(dy);
        let (axis_u, axis_v) = ([dx / length, dy / length], [-dy / length, dx / length]);
        let project = |axis: [f64; 2]| {
            hull.iter()
                .map(|p| p[0] as f64 * axis[0] + p[1] as f64 * axis[1])
                .fold((f64::INFINITY, f64::NEG_INFINITY), |(low, high), value| (low.min(value), high.max(value)))
        };
        let ((u_low, u_high), (v_low, v_high)) = (project(axis_u), project(axis_v));
        let area = (u_high - u_low) * (v_high - v_low);
        if best.is_none_or(|(smallest, _)| area < smallest) {
            let (u, v) = ((u_low + u_high) / 2.0, (v_low + v_high) / 2.0);
            let centre = [u * axis_u[0] + v * axis_v[0], u * axis_u[1] + v * axis_v[1]];
            let half_u = (u_high - u_low) / 2.0;
            let half_v = (v_high - v_low) / 2.0;
            best = Some((area, Rotated { centre, axis_u, axis_v, half_u, half_v }));
        }
    }
    best.map(|(_, rectangle)| rectangle)
}

/// The mean of `map` over the pixels inside `corners` (a convex quadrilateral, edges included), its vertices
/// truncated to whole pixels as PaddleOCR's `box_score_fast` rasterises them; 0 when none is inside.
fn mean_inside(map: &[f32], width: usize, height: usize, corners: &[[f64; 2]; 4]) -> f32 {
    let clamp = |value: f64, max: usize| (value.max(0.0) as usize).min(max - 1);
    let x_min = clamp(corners.iter().map(|c| c[0]).fold(f64::INFINITY, f64::min).floor(), width);
    let x_max = clamp(corners.iter().map(|c| c[0]).fold(f64::NEG_INFINITY, f64::max).ceil(), width);
    let y_min = clamp(corners.iter().map(|c| c[1]).fold(f64::INFINITY, f64::min).floor(), height);
    let y_max = clamp(corners.iter().map(|c| c[1]).fold(f64::NEG_INFINITY, f64::max).ceil(), height);
    let truncated =
        corners.map(|[x, y]| [(x - x_min as f64).trunc() + x_min as f64, (y - y_min as f64).trunc() + y_min as f64]);
    let (mut sum, mut count) = (0.0f64, 0usize);
    for y in y_min..=y_max {
        for x in x_min..=x_max {
            if inside(&truncated, [x as f64, y as f64]) {
                sum += f64::from(map[y * width + x]);
                count += 1;
            }
        }
    }
    if count == 0 { 0.0 } else { (sum / count as f64) as f32 }
}

/// Whether the pixel at `point` is filled when OpenCV's `fillPoly` fills the convex polygon `corners` (either
/// winding): its centre is inside, or it is a pixel of an edge as OpenCV draws it, at most half a pixel off the
/// edge along the edge's minor axis.
fn inside(corners: &[[f64; 2]; 4], point: [f64; 2]) -> bool {
    let edge = |i: usize| (corners[i], corners[(i + 1) % corners.len()]);
    let doubled_area: f64 = (0..corners.len())
        .map(|i| {
            let (a, b) = edge(i);
            a[0] * b[1] - b[0] * a[1]
        })
        .sum();
    let winding = if doubled_area < 0.0 { -1.0 } else { 1.0 };
    (0..corners.len()).all(|i| {
        let (a, b) = edge(i);
        let (dx, dy) = (b[0] - a[0], b[1] - a[1]);
        let cross = winding * (dx * (point[1] - a[1]) - dy * (point[0] - a[0]));
        cross >= -0.5 * dx.abs().max(dy.abs()) - 1e-9
    })
}

/// The detection for a rectangle in map pixels: corners in source pixels, clamped into the image, clockwise
/// from the top left; `None` when a side is 3 pixels or less there.
fn to_source(rectangle: &Rotated, geometry: &Geometry, score: f32, label: &str) -> Option<Detection> {
    let (max_x, max_y) =
        (geometry.source_width.saturating_sub(1) as f32, geometry.source_height.saturating_sub(1) as f32);
    let corners = rectangle.corners().map(|[x, y]| {
        let point = geometry.to_source(Point { x: x as f32, y: y as f32 });
        Point { x: point.x.clamp(0.0, max_x), y: point.y.clamp(0.0, max_y) }
    });
    let polygon = clockwise_from_top_left(corners);
    let side = |a: Point, b: Point| (a.x - b.x).hypot(a.y - b.y);
    if side(polygon[0], polygon[1]) <= MIN_SIDE as f32 || side(polygon[0], polygon[3]) <= MIN_SIDE as f32 {
        return None;
    }
    let bbox = BoundingBox {
        x_min: polygon.iter().map(|p| p.x).fold(f32::INFINITY, f32::min),
        y_min: polygon.iter().map(|p| p.y).fold(f32::INFINITY, f32::min),
        x_max: polygon.iter().map(|p| p.x).fold(f32::NEG_INFINITY, f32::max),
        y_max: polygon.iter().map(|p| p.y).fold(f32::NEG_INFINITY, f32::max),
    };
    Some(Detection {
        class_index: 0,
        label: label.to_owned(),
        score,
        bbox,
        landmarks: Vec::new(),
        polygon: polygon.to_vec(),
        keypoints: Vec::new(),
        mask: None,
        stages: Vec::new(),
    })
}

/// Top left, top right, bottom right, bottom left: the two leftmost corners are the left side, each side's
/// upper corner its top (PaddleOCR's `order_points_clockwise`).
fn clockwise_from_top_left(mut corners: [Point; 4]) -> [Point; 4] {
    corners.sort_by(|a, b| a.x.total_cmp(&b.x));
    let by_y = |a: Point, b: Point| if a.y <= b.y { (a, b) } else { (b, a) };
    let (top_left, bottom_left) = by_y(corners[0], corners[1]);
    let (top_right, bottom_right) = by_y(corners[2], corners[3]);
    [top_left, top_right, bottom_right, bottom_left]
}

#[cfg(test)]
mod tests {
    use super::super::test_support::geometry;
    use super::*;
    use crate::tensor::OutputTensor;

    fn spec() -> DbnetSpec {
        DbnetSpec {
            tensor: "map".to_owned(),
            threshold: 0.3,
            box_threshold: 0.5,
            unclip_ratio: 1.6,
            dilate: false,
            max_detections: 1000,
        }
    }

    /// A `width` x `height` map of zeros with `value` over the pixels where `inside(x, y)`.
    fn map(width: usize, height: usize, value: f32, inside: impl Fn(usize, usize) -> bool) -> Outputs {
        let data = (0..width * height).map(|i| if inside(i % width, i / width) { value } else { 0.0 }).collect();
        Outputs { tensors: vec![OutputTensor::new("map", vec![1, 1, height as i64, width as i64], data)] }
    }

    fn detections(output: Output) -> Vec<Detection> {
        let Output::Detection { detections } = output else { panic!("detections expected") };
        detections
    }

    #[test]
    fn an_upright_region_grows_by_the_unclip_distance_and_maps_to_source_pixels() {
        // Pixels x 10..=49, y 20..=29: pixel centres span 39 x 9, so the distance is 39*9*1.6 / (2*48) = 5.85.
        let outputs = map(100, 60, 0.9, |x, y| (10..50).contains(&x) && (20..30).contains(&y));
        let found =
            detections(DbnetDecoder::new(&spec()).decode(&outputs, &[], &geometry(200, 120, 0.5, 0.0, 0.0)).unwrap());
        assert_eq!(found.len(), 1);
        let d = 5.85;
        let want = [[10.0 - d, 20.0 - d], [49.0 + d, 20.0 - d], [49.0 + d, 29.0 + d], [10.0 - d, 29.0 + d]];
        for (got, want) in found[0].polygon.iter().zip(want) {
            // Source pixels are twice the map's.
            assert!(
                (got.x - 2.0 * want[0] as f32).abs() < 1e-3 && (got.y - 2.0 * want[1] as f32).abs() < 1e-3,
                "{got:?}"
            );
        }
        assert!((found[0].score - 0.9).abs() < 1e-6);
        assert_eq!(found[0].label, "text");
        assert!((found[0].bbox.x_min - 2.0 * (10.0 - d) as f32).abs() < 1e-3);
    }

    #[test]
    fn a_slanted_region_gives_a_rotated_rectangle() {
        // A band 8 pixels thick along y = 0.25 x + 10.
        let outputs =
            map(120, 60, 0.8, |x, y| ((y as f64) - (0.25 * x as f64 + 10.0)).abs() <= 4.0 && (10..110).contains(&x));
        let found = detections(
            DbnetDecoder::new(&spec())
                .decode(&outputs, &["word".to_owned()], &geometry(120, 60, 1.0, 0.0, 0.0))
                .unwrap(),
        );
        assert_eq!(found.len(), 1);
        let [tl, tr, br, bl] = [found[0].polygon[0], found[0].polygon[1], found[0].polygon[2], found[0].polygon[3]];
        let slope = (tr.y - tl.y) / (tr.x - tl.x);
        assert!((slope - 0.25).abs() < 0.02, "{slope}");
        assert!(tl.x < tr.x && bl.x < br.x && tl.y < bl.y && tr.y < br.y, "{:?}", found[0].polygon);
        assert_eq!(found[0].label, "word");
    }

    #[test]
    fn thin_faint_and_surplus_regions_are_dropped() {
        // Two pixels high: under the minimum side.
        let thin = map(50, 20, 0.9, |x, y| (5..40).contains(&x) && (5..7).contains(&y));
        assert!(
            detections(DbnetDecoder::new(&spec()).decode(&thin, &[], &geometry(50, 20, 1.0, 0.0, 0.0)).unwrap())
                .is_empty()
        );
        // Over the pixel threshold but under the box threshold.
        let faint = map(50, 20, 0.4, |x, y| (5..40).contains(&x) && (5..15).contains(&y));
        assert!(
            detections(DbnetDecoder::new(&spec()).decode(&faint, &[], &geometry(50, 20, 1.0, 0.0, 0.0)).unwrap())
                .is_empty()
        );
        // Two regions, one considered.
        let two = map(60, 20, 0.9, |x, y| ((2..20).contains(&x) || (30..50).contains(&x)) && (5..15).contains(&y));
        let one = DbnetDecoder::new(&DbnetSpec { max_detections: 1, ..spec() })
            .decode(&two, &[], &geometry(60, 20, 1.0, 0.0, 0.0))
            .unwrap();
        assert_eq!(detections(one).len(), 1);
        assert_eq!(
            detections(DbnetDecoder::new(&spec()).decode(&two, &[], &geometry(60, 20, 1.0, 0.0, 0.0)).unwrap()).len(),
            2
        );
    }

    #[test]
    fn dilation_joins_regions_one_pixel_apart() {
        // Two blocks with a one-pixel gap at x = 20: dilation fills it from the left.
        let outputs = map(60, 20, 0.9, |x, y| x != 20 && (5..40).contains(&x) && (5..15).contains(&y));
        let apart = DbnetDecoder::new(&spec()).decode(&outputs, &[], &geometry(60, 20, 1.0, 0.0, 0.0)).unwrap();
        assert_eq!(detections(apart).len(), 2);
        let joined = DbnetDecoder::new(&DbnetSpec { dilate: true, ..spec() })
            .decode(&outputs, &[], &geometry(60, 20, 1.0, 0.0, 0.0))
            .unwrap();
        assert_eq!(detections(joined).len(), 1);
    }

    #[test]
    fn refuses_a_map_of_another_shape() {
        let outputs = Outputs { tensors: vec![OutputTensor::new("map", vec![1, 2, 2, 2], vec![0.0; 8])] };
        let err = DbnetDecoder::new(&spec()).decode(&outputs, &[], &geometry(2, 2, 1.0, 0.0, 0.0)).unwrap_err();
        assert!(err.to_string().contains(EXPECTED), "{err}");
    }
}
