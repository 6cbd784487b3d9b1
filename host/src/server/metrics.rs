//! What a running job shows: its live counters in a `describe` reply, and every job's in the
//! Prometheus text format on `--metrics-listen` (`GET /metrics`).

use std::fmt::Write as _;
use std::sync::Arc;
use std::sync::atomic::Ordering;

use tokio::io::{AsyncReadExt, AsyncWriteExt};

use super::controller::Controller;
use super::jobs::LiveJob;
use super::proto;

/// Fills a job reply with its live view: graph, per-operator and per-function counters,
/// checkpoints, notices.
pub(crate) fn fill_job(job: &mut proto::Job, live: &LiveJob) {
    let Ok(view) = live.view.lock() else {
        return;
    };
    job.notices = view.notices.iter().cloned().collect();
    job.functions = view
        .functions
        .iter()
        .map(|f| proto::FunctionMetrics {
            name: f.sql_name.clone(),
            calls: f.metrics.calls.load(Ordering::Relaxed),
            rows: f.metrics.rows.load(Ordering::Relaxed),
            nanos: f.metrics.nanos.load(Ordering::Relaxed),
            errors: f.metrics.errors.load(Ordering::Relaxed),
        })
        .collect();
    let (Some(graph), Some(stats)) = (&view.graph, &view.stats) else {
        return;
    };
    job.graph = graph.explain();
    (job.rows_in, job.rows_out) = stats.rows_in_out(graph);
    job.operators = graph
        .nodes
        .iter()
        .zip(&stats.operators)
        .map(|(node, (name, s))| proto::OperatorMetrics {
            name: name.clone(),
            parallelism: u32::try_from(node.parallelism).unwrap_or(u32::MAX),
            rows_in: s.rows_in.load(Ordering::Relaxed),
            rows_out: s.rows_out.load(Ordering::Relaxed),
            busy_nanos: s.busy_nanos.load(Ordering::Relaxed),
            late_rows: s.late_rows.load(Ordering::Relaxed),
            skipped_rows: s.skipped_rows.load(Ordering::Relaxed),
            watermark_millis: s.watermark(),
            backpressure_nanos: s.backpressure_nanos.load(Ordering::Relaxed),
        })
        .collect();
    if let Ok(checkpoints) = stats.checkpoints.lock() {
        job.checkpoints = checkpoints
            .iter()
            .rev()
            .take(10)
            .rev()
            .map(|c| proto::CheckpointInfo {
                id: c.id,
                savepoint: c.savepoint,
                duration_millis: u64::try_from(c.duration.as_millis()).unwrap_or(u64::MAX),
                bytes_written: c.bytes_written,
                state_size: c.state_size,
                location: c.location.clone(),
            })
            .collect();
    }
}

/// Every job's counters in the Prometheus text format (version 0.0.4).
pub(crate) fn render(controller: &Controller) -> String {
    let mut out = String::new();
    let mut family = |name: &str, kind: &str, help: &str, samples: &[(String, f64)]| {
        let _ = writeln!(out, "# HELP {name} {help}");
        let _ = writeln!(out, "# TYPE {name} {kind}");
        for (labels, value) in samples {
            if labels.is_empty() {
                let _ = writeln!(out, "{name} {value}");
            } else {
                let _ = writeln!(out, "{name}{{{labels}}} {value}");
            }
        }
    };
    family(
        "weir_jobs",
        "gauge",
        "Jobs by status.",
        &controller
            .job_counts()
            .into_iter()
            .map(|(status, n)| (format!("status=\"{status}\""), n as f64))
            .collect::<Vec<_>>(),
    );
    let jobs: Vec<(proto::Job, Arc<LiveJob>)> = controller.live_snapshot();
    let mut operators: Vec<(String, &proto::OperatorMetrics, f64)> = Vec::new();
    let mut functions: Vec<(String, &proto::FunctionMetrics)> = Vec::new();
    let mut checkpoints: Vec<(String, &proto::CheckpointInfo, usize)> = Vec::new();
    for (job, live) in &jobs {
        let uptime = live.uptime_seconds();
        for op in &job.operators {
            let labels = format!(
                "job=\"{}\",job_name=\"{}\",operator=\"{}\"",
                job.id,
                escape(&job.name),
                escape(&op.name)
            );
            operators.push((labels, op, uptime));
        }
        for f in &job.functions {
            let labels = format!(
                "job=\"{}\",job_name=\"{}\",function=\"{}\"",
                job.id,
                escape(&job.name),
                escape(&f.name)
            );
            functions.push((labels, f));
        }
        if let Some(last) = job.checkpoints.iter().rev().find(|c| !c.savepoint) {
            let labels = format!("job=\"{}\",job_name=\"{}\"", job.id, escape(&job.name));
            let completed = job.checkpoints.iter().filter(|c| !c.savepoint).count();
            checkpoints.push((labels, last, completed));
        }
    }
    let op = |f: &dyn Fn(&proto::OperatorMetrics, f64) -> Option<f64>| -> Vec<(String, f64)> {
        operators
            .iter()
            .filter_map(|(labels, m, uptime)| f(m, *uptime).map(|v| (labels.clone(), v)))
            .collect()
    };
    family(
        "weir_operator_rows_in_total",
        "counter",
        "Rows an operator received.",
        &op(&|m, _| Some(m.rows_in as f64)),
    );
    family(
        "weir_operator_rows_out_total",
        "counter",
        "Rows an operator emitted.",
        &op(&|m, _| Some(m.rows_out as f64)),
    );
    family(
        "weir_operator_rows_out_per_second",
        "gauge",
        "Rows an operator emitted per second since the job (attempt) started.",
        &op(&|m, uptime| {
            Some(if uptime > 0.0 {
                m.rows_out as f64 / uptime
            } else {
                0.0
            })
        }),
    );
    family(
        "weir_operator_late_rows_dropped_total",
        "counter",
        "Rows dropped because the watermark had passed their window.",
        &op(&|m, _| Some(m.late_rows as f64)),
    );
    family(
        "weir_operator_skipped_rows_total",
        "counter",
        "Unparsable rows a source skipped (ignore-parse-errors).",
        &op(&|m, _| Some(m.skipped_rows as f64)),
    );
    family(
        "weir_operator_busy_seconds_total",
        "counter",
        "Time an operator spent working, over its subtasks.",
        &op(&|m, _| Some(m.busy_nanos as f64 / 1e9)),
    );
    family(
        "weir_operator_backpressure_seconds_total",
        "counter",
        "Time an operator waited for room downstream, over its subtasks.",
        &op(&|m, _| Some(m.backpressure_nanos as f64 / 1e9)),
    );
    family(
        "weir_operator_watermark_milliseconds",
        "gauge",
        "An operator's watermark (the least of its subtasks'), in milliseconds since the epoch.",
        &op(&|m, _| m.watermark_millis.map(|w| w as f64)),
    );
    let checkpoint = |f: &dyn Fn(&proto::CheckpointInfo, usize) -> f64| -> Vec<(String, f64)> {
        checkpoints
            .iter()
            .map(|(labels, c, n)| (labels.clone(), f(c, *n)))
            .collect()
    };
    family(
        "weir_checkpoints_completed",
        "gauge",
        "Checkpoints the job's current attempt completed (the last ten counted).",
        &checkpoint(&|_, n| n as f64),
    );
    family(
        "weir_checkpoint_last_duration_seconds",
        "gauge",
        "How long the last completed checkpoint took.",
        &checkpoint(&|c, _| c.duration_millis as f64 / 1e3),
    );
    family(
        "weir_checkpoint_last_bytes_written",
        "gauge",
        "State bytes the last completed checkpoint wrote.",
        &checkpoint(&|c, _| c.bytes_written as f64),
    );
    family(
        "weir_checkpoint_last_state_bytes",
        "gauge",
        "The size of all state the last completed checkpoint refers to.",
        &checkpoint(&|c, _| c.state_size as f64),
    );
    let udf = |f: &dyn Fn(&proto::FunctionMetrics) -> f64| -> Vec<(String, f64)> {
        functions
            .iter()
            .map(|(labels, m)| (labels.clone(), f(m)))
            .collect()
    };
    family(
        "weir_udf_calls_total",
        "counter",
        "Calls into a Wasm function (one per batch).",
        &udf(&|m| m.calls as f64),
    );
    family(
        "weir_udf_rows_total",
        "counter",
        "Rows passed to a Wasm function.",
        &udf(&|m| m.rows as f64),
    );
    family(
        "weir_udf_seconds_total",
        "counter",
        "Time spent in a Wasm function.",
        &udf(&|m| m.nanos as f64 / 1e9),
    );
    family(
        "weir_udf_errors_total",
        "counter",
        "Calls of a Wasm function that failed.",
        &udf(&|m| m.errors as f64),
    );
    family(
        "weir_runtime_alive_tasks",
        "gauge",
        "Tokio tasks alive in the server (subtasks of every job, and the server's own).",
        &[(
            String::new(),
            tokio::runtime::Handle::current()
                .metrics()
                .num_alive_tasks() as f64,
        )],
    );
    family(
        "weir_process_resident_bytes",
        "gauge",
        "The server's resident memory.",
        &[(String::new(), resident_bytes() as f64)],
    );
    out
}

/// Resident set size from /proc (0 where there is none).
fn resident_bytes() -> u64 {
    std::fs::read_to_string("/proc/self/statm")
        .ok()
        .and_then(|s| s.split_whitespace().nth(1)?.parse::<u64>().ok())
        .map_or(0, |pages| pages * 4096)
}

fn escape(value: &str) -> String {
    value
        .replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

/// Serves `GET /metrics` on `listener` until the task is dropped: plain HTTP/1.1, one request
/// per connection, no body read (Prometheus sends none).
pub(crate) async fn serve(listener: tokio::net::TcpListener, controller: Arc<Controller>) {
    loop {
        let Ok((mut stream, _)) = listener.accept().await else {
            continue;
        };
        let controller = controller.clone();
        tokio::spawn(async move {
            let mut head = Vec::with_capacity(1024);
            let mut buffer = [0u8; 1024];
            // The request line and headers, up to 16 KiB.
            while !head.windows(4).any(|w| w == b"\r\n\r\n") && head.len() < 16 << 10 {
                match tokio::time::timeout(
                    std::time::Duration::from_secs(5),
                    stream.read(&mut buffer),
                )
                .await
                {
                    Ok(Ok(n)) if n > 0 => head.extend_from_slice(&buffer[..n]),
                    _ => return,
                }
            }
            let request_line = head.split(|&b| b == b'\r').next().unwrap_or_default();
            let response = if request_line.starts_with(b"GET /metrics ")
                || request_line == b"GET /metrics"
            {
                let body = render(&controller);
                format!(
                    "HTTP/1.1 200 OK\r\nContent-Type: text/plain; version=0.0.4; charset=utf-8\r\n\
                     Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
                    body.len()
                )
            } else {
                let body = "not found: the metrics are at /metrics\n";
                format!(
                    "HTTP/1.1 404 Not Found\r\nContent-Type: text/plain\r\nContent-Length: {}\r\n\
                     Connection: close\r\n\r\n{body}",
                    body.len()
                )
            };
            let _ = stream.write_all(response.as_bytes()).await;
            let _ = stream.shutdown().await;
        });
    }
}
