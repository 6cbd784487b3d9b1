//! Window arithmetic and the window table function's operator.
//!
//! Windows are `[start, end)` in milliseconds. Overlapping windows (HOP, CUMULATE) are unions of
//! *slices*, as in Flink's slicing window operator: HOP's slices are gcd(size, slide) long,
//! CUMULATE's one step, TUMBLE's the window itself. A row belongs to exactly one slice, so a
//! window aggregation accumulates each row once and merges a window's slices when it fires.

use std::sync::Arc;

use arrow::array::{Array, ArrayRef, AsArray, TimestampMillisecondArray, UInt32Array};
use arrow::compute::{cast, take};
use arrow::datatypes::{DataType, SchemaRef, TimeUnit, TimestampMillisecondType};
use arrow::record_batch::RecordBatch;

use super::operators::{Operator, make_batch};
use crate::sql::window::WindowKind;

/// Event times beyond this (about 146 million years) are clamped, so window arithmetic never
/// overflows.
const TIME_LIMIT: i64 = 1 << 62;

/// Where windows and slices fall for one window kind.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Assigner {
    kind: WindowKind,
}

/// The start of the cell of `unit` (cells begin at `offset + k * unit`) that holds `time`.
fn align(time: i64, unit: i64, offset: i64) -> i64 {
    (time - offset).div_euclid(unit) * unit + offset
}

fn gcd(a: i64, b: i64) -> i64 {
    if b == 0 { a } else { gcd(b, a % b) }
}

impl Assigner {
    pub(crate) fn new(kind: WindowKind) -> Self {
        Self { kind }
    }

    fn offset(&self) -> i64 {
        match self.kind {
            WindowKind::Tumble { offset, .. }
            | WindowKind::Hop { offset, .. }
            | WindowKind::Cumulate { offset, .. } => offset,
            WindowKind::Session { .. } => 0,
        }
    }

    fn slice_len(&self) -> i64 {
        match self.kind {
            WindowKind::Tumble { size, .. } => size,
            WindowKind::Hop { size, slide, .. } => gcd(size, slide),
            WindowKind::Cumulate { step, .. } => step,
            WindowKind::Session { gap } => gap,
        }
    }

    /// The slice holding `time` (for SESSION, the row's own window, `[time, time + gap)`).
    pub(crate) fn slice_of(&self, time: i64) -> (i64, i64) {
        let time = time.clamp(-TIME_LIMIT, TIME_LIMIT);
        let length = self.slice_len();
        if let WindowKind::Session { gap } = self.kind {
            return (time, time + gap);
        }
        let start = align(time, length, self.offset());
        (start, start + length)
    }

    /// Every window holding `time`, by start (for SESSION, the row's own window: its session
    /// depends on other rows).
    pub(crate) fn windows_of(&self, time: i64) -> Vec<(i64, i64)> {
        let time = time.clamp(-TIME_LIMIT, TIME_LIMIT);
        let offset = self.offset();
        match self.kind {
            WindowKind::Session { gap } => vec![(time, time + gap)],
            WindowKind::Tumble { size, .. } => {
                let start = align(time, size, offset);
                vec![(start, start + size)]
            }
            WindowKind::Hop { size, slide, .. } => {
                let mut windows = Vec::with_capacity((size / slide + 1) as usize);
                let mut start = align(time, slide, offset);
                while start > time - size {
                    windows.push((start, start + size));
                    start -= slide;
                }
                windows.reverse();
                windows
            }
            WindowKind::Cumulate { size, step, .. } => {
                let base = align(time, size, offset);
                let first_end = align(time, step, offset) + step;
                (0..)
                    .map(|k| first_end + k * step)
                    .take_while(|&end| end <= base + size)
                    .map(|end| (base, end))
                    .collect()
            }
        }
    }

    /// Every window made (partly) of `slice`, by end.
    pub(crate) fn windows_of_slice(&self, (start, end): (i64, i64)) -> Vec<(i64, i64)> {
        let offset = self.offset();
        match self.kind {
            WindowKind::Tumble { .. } | WindowKind::Session { .. } => vec![(start, end)],
            WindowKind::Hop { size, slide, .. } => {
                let mut windows = Vec::new();
                let mut window_start = align(start, slide, offset);
                while window_start + size >= end {
                    windows.push((window_start, window_start + size));
                    window_start -= slide;
                }
                windows.reverse();
                windows
            }
            WindowKind::Cumulate { size, step, .. } => {
                let base = align(start, size, offset);
                (0..)
                    .map(|k| end + k * step)
                    .take_while(|&window_end| window_end <= base + size)
                    .map(|window_end| (base, window_end))
                    .collect()
            }
        }
    }

    /// The end of the last window `slice` is part of: after it fires, the slice is done.
    pub(crate) fn last_window_end(&self, (start, end): (i64, i64)) -> i64 {
        let offset = self.offset();
        match self.kind {
            WindowKind::Tumble { .. } | WindowKind::Session { .. } => end,
            WindowKind::Hop { size, slide, .. } => align(start, slide, offset) + size,
            WindowKind::Cumulate { size, .. } => align(start, size, offset) + size,
        }
    }
}

/// A timestamp column in milliseconds (floored), refusing nulls: a row without event time has
/// no window.
pub(crate) fn millis(column: &ArrayRef, name: &str) -> Result<Vec<i64>, String> {
    if column.null_count() > 0 {
        return Err(format!(
            "column '{name}' is NULL in a row: a window needs every row's time"
        ));
    }
    let DataType::Timestamp(unit, _) = column.data_type() else {
        return Err(format!(
            "column '{name}' is {}, not a TIMESTAMP",
            column.data_type()
        ));
    };
    let per_milli = match unit {
        TimeUnit::Second => {
            let values = cast(column, &DataType::Timestamp(TimeUnit::Millisecond, None))
                .map_err(|e| e.to_string())?;
            return Ok(values
                .as_primitive::<TimestampMillisecondType>()
                .values()
                .to_vec());
        }
        TimeUnit::Millisecond => 1,
        TimeUnit::Microsecond => 1_000,
        TimeUnit::Nanosecond => 1_000_000,
    };
    let raw = cast(column, &DataType::Int64).map_err(|e| e.to_string())?;
    Ok(raw
        .as_primitive::<arrow::datatypes::Int64Type>()
        .values()
        .iter()
        .map(|v| v.div_euclid(per_milli))
        .collect())
}

/// A column of window bounds, of the plan's type (milliseconds, the time column's zone).
pub(crate) fn time_column(values: Vec<i64>, data_type: &DataType) -> ArrayRef {
    Arc::new(TimestampMillisecondArray::from(values).with_data_type(data_type.clone()))
}

/// Appends each row's window (or slice) columns; without slices, a row in several windows
/// comes once per window.
pub(crate) struct WindowAssign {
    assigner: Assigner,
    time_column: usize,
    slices: bool,
    schema: SchemaRef,
}

impl WindowAssign {
    pub(crate) fn new(
        window: WindowKind,
        time_column: usize,
        slices: bool,
        schema: SchemaRef,
    ) -> Self {
        Self {
            assigner: Assigner::new(window),
            time_column,
            slices,
            schema,
        }
    }
}

impl Operator for WindowAssign {
    fn name(&self) -> &'static str {
        "WindowAssign"
    }

    fn on_batch(&mut self, batch: RecordBatch, out: &mut Vec<RecordBatch>) -> Result<(), String> {
        let column = batch
            .columns()
            .get(self.time_column)
            .ok_or("the time column is missing")?;
        let name = batch.schema().field(self.time_column).name().clone();
        let times = millis(column, &name)?;
        let (mut columns, starts, ends) = if self.slices {
            let (starts, ends) = times.iter().map(|&t| self.assigner.slice_of(t)).unzip();
            (batch.columns().to_vec(), starts, ends)
        } else {
            let mut rows = Vec::with_capacity(times.len());
            let (mut starts, mut ends) = (Vec::new(), Vec::new());
            for (row, &time) in times.iter().enumerate() {
                for (start, end) in self.assigner.windows_of(time) {
                    rows.push(row as u32);
                    starts.push(start);
                    ends.push(end);
                }
            }
            let rows = UInt32Array::from(rows);
            let columns = batch
                .columns()
                .iter()
                .map(|c| take(c, &rows, None))
                .collect::<Result<Vec<_>, _>>()
                .map_err(|e| e.to_string())?;
            (columns, starts, ends)
        };
        let rows = starts.len();
        let window_type = self
            .schema
            .fields()
            .last()
            .map(|f| f.data_type().clone())
            .ok_or("the window columns are missing")?;
        let times: Vec<i64> = ends.iter().map(|end| end - 1).collect();
        columns.push(time_column(starts, &window_type));
        columns.push(time_column(ends, &window_type));
        columns.push(time_column(times, &window_type));
        out.push(make_batch(&self.schema, columns, rows)?);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SECOND: i64 = 1_000;

    /// Every window a slice is in, against every window its times are in (by brute force).
    fn check_slices_cover_windows(kind: WindowKind) {
        let assigner = Assigner::new(kind);
        for time in -25 * SECOND..25 * SECOND {
            let slice = assigner.slice_of(time);
            assert!(
                slice.0 <= time && time < slice.1,
                "{kind}: {time} in {slice:?}"
            );
            let mut of_time = assigner.windows_of(time);
            let mut of_slice = assigner.windows_of_slice(slice);
            of_time.sort_unstable();
            of_slice.sort_unstable();
            assert_eq!(of_time, of_slice, "{kind}: time {time}, slice {slice:?}");
            for &(start, end) in &of_time {
                assert!(
                    start <= time && time < end,
                    "{kind}: {time} in {start}..{end}"
                );
            }
            let last = of_time.iter().map(|w| w.1).max().expect("a window");
            assert_eq!(assigner.last_window_end(slice), last, "{kind}: {slice:?}");
        }
    }

    #[test]
    fn slices_make_up_exactly_the_windows_of_their_rows() {
        check_slices_cover_windows(WindowKind::Tumble {
            size: 5 * SECOND,
            offset: 0,
        });
        check_slices_cover_windows(WindowKind::Tumble {
            size: 5 * SECOND,
            offset: 2 * SECOND,
        });
        check_slices_cover_windows(WindowKind::Hop {
            size: 10 * SECOND,
            slide: 2 * SECOND,
            offset: 0,
        });
        // Size not a multiple of slide: slices of gcd = 1 s.
        check_slices_cover_windows(WindowKind::Hop {
            size: 5 * SECOND,
            slide: 2 * SECOND,
            offset: 300,
        });
        check_slices_cover_windows(WindowKind::Cumulate {
            size: 6 * SECOND,
            step: 2 * SECOND,
            offset: 0,
        });
    }

    #[test]
    fn hop_windows_of_a_time_in_start_order() {
        let assigner = Assigner::new(WindowKind::Hop {
            size: 10 * SECOND,
            slide: 5 * SECOND,
            offset: 0,
        });
        assert_eq!(
            assigner.windows_of(12 * SECOND),
            [(5 * SECOND, 15 * SECOND), (10 * SECOND, 20 * SECOND)]
        );
        // Before the epoch, cells still start at multiples of the slide.
        assert_eq!(
            assigner.windows_of(-1),
            [(-10 * SECOND, 0), (-5 * SECOND, 5 * SECOND)]
        );
    }
}
