//! Charts for the pages, drawn server-side as SVG with `plotters`: stacked columns (tokens
//! per period by model), lines (tokens per period by origin) and horizontal bars (shares).
//! SVG keeps the pages readable without JavaScript; labels are real `<text>`.

use plotters::coord::Shift;
use plotters::coord::types::RangedCoordf64;
use plotters::prelude::*;

const PALETTE: [RGBColor; 11] = [
    RGBColor(0x4e, 0x79, 0xa7),
    RGBColor(0xf2, 0x8e, 0x2b),
    RGBColor(0xe1, 0x57, 0x59),
    RGBColor(0x76, 0xb7, 0xb2),
    RGBColor(0x59, 0xa1, 0x4f),
    RGBColor(0xed, 0xc9, 0x48),
    RGBColor(0xb0, 0x7a, 0xa1),
    RGBColor(0xff, 0x9d, 0xa7),
    RGBColor(0x9c, 0x75, 0x5f),
    RGBColor(0x5b, 0x5f, 0x97),
    RGBColor(0xba, 0xb0, 0xac),
];

pub fn color(i: usize) -> RGBColor {
    PALETTE[i % PALETTE.len()]
}

/// One named series of values, one per x label.
pub struct Series {
    pub name: String,
    pub values: Vec<f64>,
}

type Area<'a> = DrawingArea<SVGBackend<'a>, Shift>;

fn draw(width: u32, height: u32, f: impl FnOnce(&Area<'_>) -> Result<(), String>) -> String {
    let mut svg = String::new();
    {
        let root = SVGBackend::with_string(&mut svg, (width, height)).into_drawing_area();
        let drawn = root
            .fill(&WHITE)
            .map_err(|e| e.to_string())
            .and_then(|_| f(&root))
            .and_then(|_| root.present().map_err(|e| e.to_string()));
        if let Err(e) = drawn {
            tracing::warn!("chart not drawn: {e}");
        }
    }
    svg
}

type PeriodChart<'a, 'b> =
    ChartContext<'a, SVGBackend<'b>, Cartesian2d<RangedCoordf64, RangedCoordf64>>;

/// A chart of values per period (one x slot per label, from 0 to `y_top`), with its title
/// and axes drawn.
fn periods<'a, 'b>(
    root: &'a Area<'b>,
    title: &str,
    labels: &[String],
    y_top: f64,
    value_label: &dyn Fn(f64) -> String,
) -> Result<PeriodChart<'a, 'b>, String> {
    let n = labels.len().max(1);
    let mut chart = ChartBuilder::on(root)
        .caption(title, ("sans-serif", 18))
        .margin(12)
        .x_label_area_size(32)
        .y_label_area_size(70)
        .build_cartesian_2d(0f64..n as f64, 0f64..y_top)
        .map_err(|e| e.to_string())?;
    chart
        .configure_mesh()
        .disable_x_mesh()
        .x_labels(2 * n + 1)
        .x_label_formatter(&|x| axis_label(labels, *x))
        .y_label_formatter(&|y| value_label(*y))
        .draw()
        .map_err(|e| e.to_string())?;
    Ok(chart)
}

/// The series' names in the upper left corner.
fn legend<'a, 'b: 'a>(chart: &mut PeriodChart<'a, 'b>) -> Result<(), String> {
    chart
        .configure_series_labels()
        .position(SeriesLabelPosition::UpperLeft)
        .background_style(WHITE.mix(0.85))
        .border_style(BLACK.mix(0.3))
        .label_font(("sans-serif", 12))
        .draw()
        .map_err(|e| e.to_string())
}

/// Most x labels drawn; with more buckets, every n-th is labelled.
const MAX_X_LABELS: usize = 12;

fn axis_label(labels: &[String], x: f64) -> String {
    let i = x.floor();
    if i < 0.0 || (x - i - 0.5).abs() > 0.01 {
        return String::new();
    }
    let i = i as usize;
    let step = labels.len().div_ceil(MAX_X_LABELS).max(1);
    // Count from the last bucket, so the most recent one is always labelled.
    let last = labels.len().saturating_sub(1);
    if !(last - i.min(last)).is_multiple_of(step) {
        return String::new();
    }
    labels.get(i).cloned().unwrap_or_default()
}

/// The top of a value axis: the largest value, or 1 when there is nothing to show.
fn axis_top(max: f64) -> f64 {
    if max > 0.0 { max } else { 1.0 }
}

/// Columns per x label, each stacked from `series` (first at the bottom), with a legend.
pub fn stacked_columns(
    title: &str,
    labels: &[String],
    series: &[Series],
    value_label: &dyn Fn(f64) -> String,
) -> String {
    let n = labels.len().max(1);
    let top = (0..n)
        .map(|i| {
            series
                .iter()
                .map(|s| s.values.get(i).copied().unwrap_or(0.0))
                .sum::<f64>()
        })
        .fold(0.0_f64, f64::max);
    let top = axis_top(top);
    draw(860, 380, |root| {
        let mut chart = periods(root, title, labels, top * 1.08, value_label)?;
        let mut base = vec![0.0; n];
        for (k, s) in series.iter().enumerate() {
            let c = color(k);
            let rects: Vec<Rectangle<(f64, f64)>> = (0..n)
                .map(|i| {
                    let v = s.values.get(i).copied().unwrap_or(0.0);
                    let r = Rectangle::new(
                        [(i as f64 + 0.15, base[i]), (i as f64 + 0.85, base[i] + v)],
                        c.filled(),
                    );
                    base[i] += v;
                    r
                })
                .collect();
            chart
                .draw_series(rects)
                .map_err(|e| e.to_string())?
                .label(s.name.clone())
                .legend(move |(x, y)| Rectangle::new([(x, y - 5), (x + 10, y + 5)], c.filled()));
        }
        legend(&mut chart)
    })
}

/// One line per series across the x labels, with a legend.
pub fn lines(
    title: &str,
    labels: &[String],
    series: &[Series],
    value_label: &dyn Fn(f64) -> String,
) -> String {
    let top = series
        .iter()
        .flat_map(|s| s.values.iter().copied())
        .fold(0.0_f64, f64::max);
    let top = axis_top(top);
    draw(860, 340, |root| {
        let mut chart = periods(root, title, labels, top * 1.1, value_label)?;
        for (k, s) in series.iter().enumerate() {
            let c = color(k);
            let points: Vec<(f64, f64)> = s
                .values
                .iter()
                .enumerate()
                .map(|(i, v)| (i as f64 + 0.5, *v))
                .collect();
            chart
                .draw_series(LineSeries::new(points.clone(), c.stroke_width(3)))
                .map_err(|e| e.to_string())?
                .label(s.name.clone())
                .legend(move |(x, y)| {
                    PathElement::new(vec![(x, y), (x + 14, y)], c.stroke_width(3))
                });
            chart
                .draw_series(points.into_iter().map(|p| Circle::new(p, 4, c.filled())))
                .map_err(|e| e.to_string())?;
        }
        legend(&mut chart)
    })
}

/// Horizontal bars, one per item, labelled with its name and `value_label`.
pub fn bars(title: &str, items: &[(String, f64)], value_label: &dyn Fn(f64) -> String) -> String {
    let n = items.len().max(1);
    let top = axis_top(items.iter().map(|i| i.1).fold(0.0_f64, f64::max));
    let height = 60 + 30 * n as u32;
    draw(860, height, |root| {
        let mut chart = ChartBuilder::on(root)
            .caption(title, ("sans-serif", 18))
            .margin(12)
            .build_cartesian_2d(0f64..top * 1.6, 0f64..n as f64)
            .map_err(|e| e.to_string())?;
        for (k, (name, v)) in items.iter().enumerate() {
            let y = (n - 1 - k) as f64;
            let c = color(k);
            chart
                .draw_series(std::iter::once(Rectangle::new(
                    [(0.0, y + 0.15), (*v, y + 0.85)],
                    c.filled(),
                )))
                .map_err(|e| e.to_string())?;
            chart
                .draw_series(std::iter::once(Text::new(
                    format!("{name}  {}", value_label(*v)),
                    (*v + top * 0.02, y + 0.7),
                    ("sans-serif", 13).into_font(),
                )))
                .map_err(|e| e.to_string())?;
        }
        Ok(())
    })
}
