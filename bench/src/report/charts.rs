//! PNG bar charts of the results, drawn with plotters.

use std::path::Path;

use anyhow::Context as _;
use plotters::coord::ranged1d::{SegmentValue, SegmentedCoord};
use plotters::coord::types::RangedCoordi32;
use plotters::prelude::*;

/// The font every chart's text is drawn in; Debian's fonts-dejavu-core installs it.
pub(crate) const DEFAULT_FONT: &str = "/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf";

const WIDTH: u32 = 1000;
const HEIGHT: u32 = 560;
/// One colour per series, in order.
const COLOURS: [RGBColor; 4] = [
    RGBColor(31, 119, 180),
    RGBColor(255, 127, 14),
    RGBColor(44, 160, 44),
    RGBColor(148, 103, 189),
];

/// Loads the font that chart text is drawn in. plotters keeps it for the process's life.
pub(crate) fn load_font(path: &Path) -> anyhow::Result<()> {
    let bytes = std::fs::read(path).with_context(|| {
        format!(
            "cannot read the chart font {}; install Debian's fonts-dejavu-core or pass --font",
            path.display()
        )
    })?;
    let bytes: &'static [u8] = Box::leak(bytes.into_boxed_slice());
    plotters::style::register_font("sans-serif", FontStyle::Normal, bytes)
        .map_err(|_| anyhow::anyhow!("{} is not a TrueType or OpenType font", path.display()))
}

/// A bar chart with one group of bars per category and one bar per series in each group.
#[derive(Debug)]
pub(crate) struct BarChart<'a> {
    pub(crate) title: &'a str,
    pub(crate) y_label: &'a str,
    pub(crate) categories: Vec<String>,
    /// Series name and one value per category; `None` draws no bar.
    pub(crate) series: Vec<(String, Vec<Option<f64>>)>,
    pub(crate) log_scale: bool,
    /// A dashed horizontal line with its label, such as a goal.
    pub(crate) line: Option<(f64, String)>,
}

impl BarChart<'_> {
    /// Draws the chart into a PNG file at `path`.
    pub(crate) fn draw(&self, path: &Path) -> anyhow::Result<()> {
        self.draw_into(path)
            .map_err(|err| anyhow::anyhow!("cannot draw {}: {err}", path.display()))
    }

    fn draw_into<'p>(&self, path: &'p Path) -> Result<(), Box<dyn std::error::Error + 'p>> {
        let values = self
            .series
            .iter()
            .flat_map(|(_, values)| values.iter().flatten().copied())
            .chain(self.line.as_ref().map(|(value, _)| *value));
        let (low, high) = values.fold((f64::MAX, 0.0_f64), |(low, high), value| {
            (low.min(value), high.max(value))
        });
        let high = if high > 0.0 { high } else { 1.0 };
        // Each category has one slot per series and an empty slot as a gap.
        let slots_per_category = self.series.len() + 1;
        // The last category needs no gap after it.
        let slots = (self.categories.len() * slots_per_category)
            .saturating_sub(1)
            .max(1) as i32;
        let root = BitMapBackend::new(path, (WIDTH, HEIGHT)).into_drawing_area();
        root.fill(&WHITE)?;
        let mut builder = ChartBuilder::on(&root);
        builder
            .caption(self.title, ("sans-serif", 24))
            .margin(16)
            .x_label_area_size(40)
            .y_label_area_size(80);
        let label_of = |slot: &SegmentValue<i32>| -> String {
            let SegmentValue::CenterOf(slot) = slot else {
                return String::new();
            };
            let slot = *slot as usize;
            let middle = (self.series.len().saturating_sub(1)) / 2;
            if slot % slots_per_category == middle {
                self.categories
                    .get(slot / slots_per_category)
                    .cloned()
                    .unwrap_or_default()
            } else {
                String::new()
            }
        };
        if self.log_scale {
            let bottom = 10f64.powf(low.max(1e-9).log10().floor());
            let top = 10f64.powf(high.log10().ceil()).max(bottom * 10.0);
            let mut chart = builder
                .build_cartesian_2d((0..slots - 1).into_segmented(), (bottom..top).log_scale())?;
            chart
                .configure_mesh()
                .disable_x_mesh()
                .x_labels(slots as usize)
                .x_label_formatter(&label_of)
                .y_desc(self.y_label)
                .y_label_formatter(&|value| format_number(*value))
                .label_style(("sans-serif", 15))
                .draw()?;
            self.draw_bars(&mut chart, bottom, slots)?;
        } else {
            let mut chart =
                builder.build_cartesian_2d((0..slots - 1).into_segmented(), 0.0..high * 1.1)?;
            chart
                .configure_mesh()
                .disable_x_mesh()
                .x_labels(slots as usize)
                .x_label_formatter(&label_of)
                .y_desc(self.y_label)
                .y_label_formatter(&|value| format_number(*value))
                .label_style(("sans-serif", 15))
                .draw()?;
            self.draw_bars(&mut chart, 0.0, slots)?;
        }
        root.present()?;
        Ok(())
    }

    fn draw_bars<'b, Y>(
        &self,
        chart: &mut ChartContext<
            'b,
            BitMapBackend<'b>,
            Cartesian2d<SegmentedCoord<RangedCoordi32>, Y>,
        >,
        bottom: f64,
        slots: i32,
    ) -> Result<(), Box<dyn std::error::Error + 'b>>
    where
        Y: Ranged<ValueType = f64>,
    {
        let slots_per_category = self.series.len() + 1;
        for (index, (name, values)) in self.series.iter().enumerate() {
            let colour = COLOURS[index % COLOURS.len()];
            let bars = values.iter().enumerate().filter_map(|(category, value)| {
                let value = (*value)?;
                let slot = (category * slots_per_category + index) as i32;
                Some(Rectangle::new(
                    [
                        (SegmentValue::Exact(slot), bottom),
                        (SegmentValue::Exact(slot + 1), value.max(bottom)),
                    ],
                    colour.filled(),
                ))
            });
            chart
                .draw_series(bars)?
                .label(name.as_str())
                .legend(move |(x, y)| {
                    Rectangle::new([(x, y - 6), (x + 12, y + 6)], colour.filled())
                });
        }
        if let Some((value, label)) = &self.line {
            let value = *value;
            chart
                .draw_series(LineSeries::new(
                    [
                        (SegmentValue::Exact(0), value),
                        (SegmentValue::Exact(slots), value),
                    ],
                    RED.stroke_width(2),
                ))?
                .label(label.as_str())
                .legend(|(x, y)| PathElement::new([(x, y), (x + 12, y)], RED.stroke_width(2)));
        }
        chart
            .configure_series_labels()
            .position(SeriesLabelPosition::UpperRight)
            .background_style(WHITE.mix(0.85))
            .border_style(BLACK)
            .label_font(("sans-serif", 15))
            .draw()?;
        Ok(())
    }
}

/// Formats an axis value with thousands separators, or with decimals below 10.
pub(crate) fn format_number(value: f64) -> String {
    if value.abs() < 10.0 && value.fract() != 0.0 {
        return format!("{value:.1}");
    }
    let whole = value.round() as i64;
    let digits = whole.unsigned_abs().to_string();
    let mut grouped = String::with_capacity(digits.len() + digits.len() / 3);
    for (index, digit) in digits.chars().enumerate() {
        if index > 0 && (digits.len() - index).is_multiple_of(3) {
            grouped.push(',');
        }
        grouped.push(digit);
    }
    if whole < 0 {
        grouped.insert(0, '-');
    }
    grouped
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_get_thousands_separators() {
        assert_eq!(format_number(1_234_567.0), "1,234,567");
        assert_eq!(format_number(999.0), "999");
        assert_eq!(format_number(1000.0), "1,000");
        assert_eq!(format_number(2.5), "2.5");
    }

    #[test]
    fn chart_is_written_as_png() {
        load_font(Path::new(DEFAULT_FONT)).expect("the chart font loads");
        let dir = tempfile_dir();
        let path = dir.join("chart.png");
        BarChart {
            title: "test",
            y_label: "messages/s",
            categories: vec!["a".into(), "b".into()],
            series: vec![
                ("one".into(), vec![Some(10.0), Some(1000.0)]),
                ("two".into(), vec![None, Some(50.0)]),
            ],
            log_scale: true,
            line: Some((100.0, "goal".into())),
        }
        .draw(&path)
        .expect("the chart draws");
        let bytes = std::fs::read(&path).expect("the chart file exists");
        assert_eq!(&bytes[..8], b"\x89PNG\r\n\x1a\n");
        std::fs::remove_dir_all(dir).ok();
    }

    fn tempfile_dir() -> std::path::PathBuf {
        let dir = std::env::temp_dir().join(format!("sluice-chart-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("a temporary directory");
        dir
    }
}
