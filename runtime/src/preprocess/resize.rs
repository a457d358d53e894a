//! Fitting an RGB8 frame of any size into the model's width x height (stretch, letterbox or centre crop), and
//! the [`Geometry`] that maps model coordinates back to the frame.
//!
//! Resampling is fast_image_resize's, with the manifest's filter (`input.filter`), run rows first and columns
//! second as PIL runs it. The default, bilinear with antialiasing, is its convolution, which widens the kernel
//! when downscaling as PIL's `BILINEAR` does; the Python references resize with PIL, and on the shipped PNG
//! frames the result is within one level of theirs, with under 1% of values one level off. How far each other
//! filter is from OpenCV's or PIL's is measured in docs/bundle-format.md.

use fast_image_resize::images::{CroppedImageMut, Image, ImageRef};
use fast_image_resize::{FilterType, PixelType, ResizeAlg, ResizeOptions, Resizer};

use crate::error::{Error, Result};
use crate::frame::{Frame, PixelFormat};
use crate::manifest::{ImageInputSpec, PadSide, Padding, ResizeFilter, ResizeMode};
use protocol::{BoundingBox, Point};

/// How model coordinates relate to source-image pixels: `model_x = source_x * scale_x + offset_x`, and the
/// same for y.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Geometry {
    /// Width of the source image in pixels.
    pub source_width: u32,
    /// Height of the source image in pixels.
    pub source_height: u32,
    /// Model pixels per source pixel, horizontally.
    pub scale_x: f32,
    /// Model pixels per source pixel, vertically.
    pub scale_y: f32,
    /// Model x of source x = 0 (the left padding of a letterbox, negative for a crop).
    pub offset_x: f32,
    /// Model y of source y = 0.
    pub offset_y: f32,
}

impl Geometry {
    /// A point in model coordinates as source-image pixels (not clamped: a landmark may lie outside).
    pub fn to_source(&self, point: Point) -> Point {
        let x = (f64::from(point.x) - f64::from(self.offset_x)) / f64::from(self.scale_x);
        let y = (f64::from(point.y) - f64::from(self.offset_y)) / f64::from(self.scale_y);
        Point { x: x as f32, y: y as f32 }
    }

    /// A point in source-image pixels as model coordinates.
    pub fn to_model(&self, point: Point) -> Point {
        let x = f64::from(point.x) * f64::from(self.scale_x) + f64::from(self.offset_x);
        let y = f64::from(point.y) * f64::from(self.scale_y) + f64::from(self.offset_y);
        Point { x: x as f32, y: y as f32 }
    }

    /// A box in model coordinates as source-image pixels, clamped to the source image.
    pub fn to_source_box(&self, bbox: BoundingBox) -> BoundingBox {
        let (width, height) = (self.source_width as f32, self.source_height as f32);
        let min = self.to_source(Point { x: bbox.x_min, y: bbox.y_min });
        let max = self.to_source(Point { x: bbox.x_max, y: bbox.y_max });
        BoundingBox {
            x_min: min.x.clamp(0.0, width),
            y_min: min.y.clamp(0.0, height),
            x_max: max.x.clamp(0.0, width),
            y_max: max.y.clamp(0.0, height),
        }
    }
}

/// How frames are fitted into the model's input: the manifest's resize keys.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct Fit {
    pub mode: ResizeMode,
    /// For `center_crop`: the share of the short side kept.
    pub crop_fraction: f32,
    /// For `letterbox`: where the padding goes.
    pub pad_side: PadSide,
    pub filter: ResizeFilter,
    /// The canvas's letterbox fill; a fill that is no whole pixel value is the normaliser's to write.
    pub pad_value: u8,
}

impl Fit {
    /// The fit `spec` asks for.
    pub fn of(spec: &ImageInputSpec) -> Fit {
        let pad_value = match spec.padding() {
            Padding::Pixel(value) => value.round().clamp(0.0, 255.0) as u8,
            Padding::Normalized(_) => 0,
        };
        Fit {
            mode: spec.resize,
            crop_fraction: spec.crop_fraction,
            pad_side: spec.pad_side,
            filter: spec.filter,
            pad_value,
        }
    }
}

/// fast_image_resize's algorithm for a filter.
fn algorithm(filter: ResizeFilter) -> ResizeAlg {
    match filter {
        ResizeFilter::Nearest => ResizeAlg::Nearest,
        // Interpolation keeps the kernel's support whatever the scale, as OpenCV's INTER_LINEAR does.
        ResizeFilter::Bilinear => ResizeAlg::Interpolation(FilterType::Bilinear),
        ResizeFilter::BilinearAntialias => ResizeAlg::Convolution(FilterType::Bilinear),
        ResizeFilter::Area => ResizeAlg::Convolution(FilterType::Box),
        // PIL's bicubic is Catmull-Rom (a = -0.5).
        ResizeFilter::Bicubic => ResizeAlg::Convolution(FilterType::CatmullRom),
        ResizeFilter::Lanczos => ResizeAlg::Convolution(FilterType::Lanczos3),
    }
}

/// Where the resized source goes.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) enum Placement {
    /// The whole source onto the whole model input.
    Whole,
    /// The whole source into this rectangle of the model input; the rest is padding.
    Inset { left: u32, top: u32, width: u32, height: u32 },
    /// This rectangle of the source (fractional pixels) onto the whole model input.
    Crop { left: f64, top: f64, width: f64, height: f64 },
}

/// What one resize does: where the source goes and the geometry that results.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct ResizePlan {
    pub geometry: Geometry,
    pub placement: Placement,
}

impl ResizePlan {
    /// The plan for a `source` (width, height) frame into a `model` (width, height) input. Sizes must be
    /// positive; manifest validation and the decoder see to that.
    pub fn new(fit: Fit, source: (u32, u32), model: (u32, u32)) -> ResizePlan {
        let (w, h) = (f64::from(source.0), f64::from(source.1));
        let (model_w, model_h) = (f64::from(model.0), f64::from(model.1));
        let geometry = |scale_x: f64, scale_y: f64, offset_x: f64, offset_y: f64| Geometry {
            source_width: source.0,
            source_height: source.1,
            scale_x: scale_x as f32,
            scale_y: scale_y as f32,
            offset_x: offset_x as f32,
            offset_y: offset_y as f32,
        };
        match fit.mode {
            ResizeMode::Stretch => {
                ResizePlan { geometry: geometry(model_w / w, model_h / h, 0.0, 0.0), placement: Placement::Whole }
            }
            ResizeMode::Letterbox => {
                let scale = (model_w / w).min(model_h / h);
                // Python's round() (ties to even), as the reference letterbox computes it; at least one pixel.
                let fitted = |side: f64, model_side: u32| {
                    ((side * scale).round_ties_even() as u32).clamp(model_side.min(1), model_side)
                };
                let (width, height) = (fitted(w, model.0), fitted(h, model.1));
                let (left, top) = match fit.pad_side {
                    PadSide::Center => ((model.0 - width) / 2, (model.1 - height) / 2),
                    PadSide::BottomRight => (0, 0),
                };
                ResizePlan {
                    geometry: geometry(f64::from(width) / w, f64::from(height) / h, f64::from(left), f64::from(top)),
                    placement: Placement::Inset { left, top, width, height },
                }
            }
            ResizeMode::CenterCrop => {
                let scale = (model_w / w).max(model_h / h) / f64::from(fit.crop_fraction);
                // The box is inside the source by construction; min() only absorbs rounding.
                let (width, height) = ((model_w / scale).min(w), (model_h / scale).min(h));
                let (left, top) = (((w - width) / 2.0).max(0.0), ((h - height) / 2.0).max(0.0));
                let (left, top) = (left.min(w - width), top.min(h - height));
                let (scale_x, scale_y) = (model_w / width, model_h / height);
                ResizePlan {
                    geometry: geometry(scale_x, scale_y, -left * scale_x, -top * scale_y),
                    placement: Placement::Crop { left, top, width, height },
                }
            }
        }
    }
}

/// How one frame is resized (see [`FrameResizer::layout`]).
struct ResizeLayout {
    plan: ResizePlan,
    /// Left, top, width and height of the box read from the image resampled, in its fractional pixels (the
    /// source's divided by the decoder's reduction).
    source_box: (f64, f64, f64, f64),
    /// Left, top, width and height of the canvas written.
    target: (u32, u32, u32, u32),
    /// Both rows and columns are resampled, through an intermediate.
    two_passes: bool,
}

/// Rows of a raw frame converted to RGB8 at a time before their horizontal pass: 64 rows of 1080p are 360 KiB,
/// which stay in L2 cache (1 MiB on a Raspberry Pi 4) between the conversion writing them and the resampler
/// reading them. Each strip costs the resampler a set-up; 16-row strips made 1080p NV12 to 224x224 20% slower.
const STRIP_ROWS: u32 = 64;

/// The reductions a JPEG decoder can apply in its IDCT, largest first.
const JPEG_REDUCTIONS: [u32; 3] = [8, 4, 2];

/// Resizes frames into a model-sized RGB8 canvas kept across calls.
#[derive(Debug)]
pub(crate) struct FrameResizer {
    fit: Fit,
    width: u32,
    height: u32,
    canvas: Vec<u8>,
    /// Where the last frame went in a letterbox: left, top, width and height of the canvas rectangle.
    inset: Option<(u32, u32, u32, u32)>,
    /// The frame resampled along its rows only: the first of two passes (see [`FrameResizer::resize`]).
    rows_resampled: Vec<u8>,
    /// A few rows of a raw frame as RGB8 (see [`FrameResizer::resize_frame`]).
    strip: Vec<u8>,
    /// A whole raw frame as RGB8, for the frames that are resampled in one direction or not at all.
    converted: Vec<u8>,
    resizer: Resizer,
    options: ResizeOptions,
}

impl FrameResizer {
    /// A resizer into `width` x `height`.
    pub fn new(fit: Fit, width: u32, height: u32) -> FrameResizer {
        FrameResizer {
            fit,
            width,
            height,
            canvas: vec![fit.pad_value; width as usize * height as usize * 3],
            inset: None,
            rows_resampled: Vec::new(),
            strip: Vec::new(),
            converted: Vec::new(),
            resizer: Resizer::new(),
            options: ResizeOptions::new().resize_alg(algorithm(fit.filter)),
        }
    }

    /// Resizes into `width` x `height` from now on (an input size chosen per frame).
    pub fn set_size(&mut self, width: u32, height: u32) {
        if (width, height) != (self.width, self.height) {
            (self.width, self.height) = (width, height);
            self.canvas.resize(width as usize * height as usize * 3, self.fit.pad_value);
        }
    }

    /// Resizes `rgb` (`source_width` x `source_height`, RGB8) into the canvas.
    pub fn resize(&mut self, rgb: &[u8], source_width: u32, source_height: u32) -> Result<Geometry> {
        let size = (source_width, source_height);
        self.resize_reduced(rgb, size, size, 1)
    }

    /// Resizes `rgb`, a `source` (width, height) image that a JPEG decoder reduced by `reduction` in its
    /// IDCT to `decoded` (width, height), each decoded pixel covering `reduction` x `reduction` source
    /// pixels (fewer on the right and bottom edges). The geometry maps to source pixels.
    pub fn resize_reduced(
        &mut self,
        rgb: &[u8],
        decoded: (u32, u32),
        source: (u32, u32),
        reduction: u32,
    ) -> Result<Geometry> {
        let layout = self.layout(source, reduction);
        self.start_canvas(&layout);
        let image = ImageRef::new(decoded.0, decoded.1, rgb, PixelType::U8x3).map_err(resize_error)?;
        if layout.two_passes {
            self.rows_resampled.resize(layout.target.2 as usize * decoded.1 as usize * 3, 0);
            self.resample_rows(&image, &layout, 0)?;
            self.resample_columns(&layout, decoded.1)?;
        } else {
            let (box_left, box_top, box_width, box_height) = layout.source_box;
            let source_box = self.options.crop(box_left, box_top, box_width, box_height);
            let (left, top, width, height) = layout.target;
            let mut canvas = Image::from_slice_u8(self.width, self.height, &mut self.canvas, PixelType::U8x3)
                .map_err(resize_error)?;
            let mut target = CroppedImageMut::new(&mut canvas, left, top, width, height).map_err(resize_error)?;
            self.resizer.resize(&image, &mut target, &source_box).map_err(resize_error)?;
        }
        Ok(layout.plan.geometry)
    }

    /// Resizes a raw frame into the canvas. An RGB8 frame without row padding is read where it lies. Other
    /// frames resampled both ways are converted to RGB8 [`STRIP_ROWS`] rows at a time, each strip's rows
    /// resampled into the intermediate as soon as it is converted (resampling rows reads no other row), so
    /// that no RGB8 copy of the whole frame is made; the result is exactly what converting the whole frame,
    /// then resizing it, gives. A frame resampled one way or not at all is converted whole, then resized.
    pub fn resize_frame(&mut self, frame: &Frame) -> Result<Geometry> {
        let (width, height) = (frame.width(), frame.height());
        let pixels = width as usize * height as usize;
        if frame.format() == PixelFormat::Rgb8 && frame.strides()[0] == width as usize * 3 {
            return self.resize(&frame.data()[..pixels * 3], width, height);
        }
        let layout = self.layout((width, height), 1);
        if !layout.two_passes {
            let mut converted = std::mem::take(&mut self.converted);
            converted.resize(pixels * 3, 0);
            frame.write_rgb8_rows(0, &mut converted);
            let resized = self.resize(&converted, width, height);
            self.converted = converted;
            return resized;
        }
        self.start_canvas(&layout);
        self.rows_resampled.resize(layout.target.2 as usize * height as usize * 3, 0);
        let mut strip = std::mem::take(&mut self.strip);
        strip.resize(width as usize * STRIP_ROWS as usize * 3, 0);
        for first_row in (0..height).step_by(STRIP_ROWS as usize) {
            let rows = STRIP_ROWS.min(height - first_row);
            let strip = &mut strip[..width as usize * rows as usize * 3];
            frame.write_rgb8_rows(first_row, strip);
            let image = ImageRef::new(width, rows, strip, PixelType::U8x3).map_err(resize_error)?;
            self.resample_rows(&image, &layout, first_row)?;
        }
        self.strip = strip;
        self.resample_columns(&layout, height)?;
        Ok(layout.plan.geometry)
    }

    /// The largest reduction (8, 4 or 2; 1 for none) a JPEG decoder may apply to a `source` (width, height)
    /// image for this resize: the box read must keep at least as many pixels as the canvas rectangle it
    /// fills, both ways, so that nothing is upscaled afterwards. None for a filter without antialiasing: it
    /// samples a few source pixels where a reduced decode would average blocks of them.
    pub fn max_reduction(&self, source: (u32, u32)) -> u32 {
        if !self.fit.filter.antialiases() {
            return 1;
        }
        let layout = self.layout(source, 1);
        let (_, _, box_width, box_height) = layout.source_box;
        let (_, _, width, height) = layout.target;
        JPEG_REDUCTIONS
            .into_iter()
            .find(|&reduction| {
                let reduced = f64::from(reduction);
                box_width / reduced >= f64::from(width) && box_height / reduced >= f64::from(height)
            })
            .unwrap_or(1)
    }

    /// Bytes of the intermediate that resizing a `source` (width, height) image decoded at `1 / reduction`
    /// needs besides the image and the canvas: the image resampled along its rows, when both directions are
    /// resampled.
    pub fn intermediate_bytes(&self, source: (u32, u32), reduction: u32) -> u64 {
        let layout = self.layout(source, reduction);
        let decoded_height = source.1.div_ceil(reduction);
        if layout.two_passes { u64::from(layout.target.2) * u64::from(decoded_height) * 3 } else { 0 }
    }

    /// Frees the buffers over `retained_bytes`; smaller ones are kept for the next frame.
    pub fn release_outsized(&mut self, retained_bytes: usize) {
        for buffer in [&mut self.rows_resampled, &mut self.converted] {
            if buffer.capacity() > retained_bytes {
                *buffer = Vec::new();
            }
        }
    }

    /// What resizing a `source` (width, height) frame, decoded at `1 / reduction`, does: the plan, the
    /// box read from the decoded image and the canvas rectangle written.
    fn layout(&self, source: (u32, u32), reduction: u32) -> ResizeLayout {
        let plan = ResizePlan::new(self.fit, source, (self.width, self.height));
        let whole_source = (0.0, 0.0, f64::from(source.0), f64::from(source.1));
        let whole_canvas = (0, 0, self.width, self.height);
        let (source_box, target) = match plan.placement {
            Placement::Whole => (whole_source, whole_canvas),
            Placement::Crop { left, top, width, height } => ((left, top, width, height), whole_canvas),
            Placement::Inset { left, top, width, height } => (whole_source, (left, top, width, height)),
        };
        let reduced = f64::from(reduction);
        let (box_left, box_top, box_width, box_height) = source_box;
        let source_box = (box_left / reduced, box_top / reduced, box_width / reduced, box_height / reduced);
        let (box_left, box_top, box_width, box_height) = source_box;
        let resample_rows = f64::from(target.2) != box_width || box_left.fract() != 0.0;
        let resample_columns = f64::from(target.3) != box_height || box_top.fract() != 0.0;
        ResizeLayout { plan, source_box, target, two_passes: resample_rows && resample_columns }
    }

    /// Pads the canvas around a letterbox's inset, and remembers the inset.
    fn start_canvas(&mut self, layout: &ResizeLayout) {
        self.inset = None;
        if let Placement::Inset { .. } = layout.plan.placement {
            fill_border(&mut self.canvas, self.width, layout.target, self.fit.pad_value);
            self.inset = Some(layout.target);
        }
    }

    /// The first of two passes: `image`, rows `first_row..` of the image being resized, resampled along its
    /// rows into the same rows of the intermediate.
    ///
    /// PIL resamples rows first, then columns, rounding to 8 bits in between; fast_image_resize does columns
    /// first for 8-bit pixels, which moves about one value in seven by a level. Two one-way passes keep PIL's
    /// order.
    fn resample_rows(&mut self, image: &ImageRef<'_>, layout: &ResizeLayout, first_row: u32) -> Result<()> {
        let width = layout.target.2;
        let row_bytes = width as usize * 3;
        let rows = &mut self.rows_resampled[first_row as usize * row_bytes..][..image.height() as usize * row_bytes];
        let mut rows = Image::from_slice_u8(width, image.height(), rows, PixelType::U8x3).map_err(resize_error)?;
        let (box_left, _, box_width, _) = layout.source_box;
        let rows_box = self.options.crop(box_left, 0.0, box_width, f64::from(image.height()));
        self.resizer.resize(image, &mut rows, &rows_box).map_err(resize_error)
    }

    /// The second pass: the intermediate's `height` rows resampled along the columns into the canvas.
    fn resample_columns(&mut self, layout: &ResizeLayout, height: u32) -> Result<()> {
        let (left, top, width, target_height) = layout.target;
        let rows = ImageRef::new(width, height, &self.rows_resampled, PixelType::U8x3).map_err(resize_error)?;
        let mut canvas =
            Image::from_slice_u8(self.width, self.height, &mut self.canvas, PixelType::U8x3).map_err(resize_error)?;
        let mut target = CroppedImageMut::new(&mut canvas, left, top, width, target_height).map_err(resize_error)?;
        let (_, box_top, _, box_height) = layout.source_box;
        let columns_box = self.options.crop(0.0, box_top, f64::from(width), box_height);
        self.resizer.resize(&rows, &mut target, &columns_box).map_err(resize_error)
    }

    /// The last resized frame, RGB8, model width x height.
    pub fn canvas(&self) -> &[u8] {
        &self.canvas
    }

    /// Where the last frame went in a letterbox (left, top, width, height); `None` when it filled the canvas.
    pub fn inset(&self) -> Option<(u32, u32, u32, u32)> {
        self.inset
    }
}

/// Fills everything outside the `inset` rectangle (left, top, width, height) of an RGB8 canvas with `value`,
/// leaving the inset alone so it is not written twice.
fn fill_border(canvas: &mut [u8], canvas_width: u32, inset: (u32, u32, u32, u32), value: u8) {
    let (left, top, width, height) = inset;
    let row_len = canvas_width as usize * 3;
    if row_len == 0 {
        return;
    }
    let (left_len, inset_len) = (left as usize * 3, width as usize * 3);
    for (y, row) in canvas.chunks_exact_mut(row_len).enumerate() {
        if y < top as usize || y >= (top + height) as usize {
            row.fill(value);
        } else {
            row[..left_len].fill(value);
            row[left_len + inset_len..].fill(value);
        }
    }
}

fn resize_error(error: impl std::fmt::Display) -> Error {
    // Unreachable with the buffers and boxes built here; reported rather than panicking all the same.
    Error::Decode { reason: format!("cannot resize the image: {error}") }
}
