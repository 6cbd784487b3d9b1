//! `weir jobs` lists jobs; `weir job <id>` describes one: status, graph, per-operator
//! counters and watermarks, checkpoints, functions, notices and the last error.

use std::time::Duration;

use super::remote::{Output, ServerArgs, job_json, print_jobs, print_json, print_table};

/// Arguments of `weir jobs`.
#[derive(Debug, clap::Args)]
pub struct JobsArgs {
    #[command(flatten)]
    pub server: ServerArgs,
}

/// Arguments of `weir job`.
#[derive(Debug, clap::Args)]
pub struct JobArgs {
    pub id: u64,
    #[command(flatten)]
    pub server: ServerArgs,
}

pub fn list(args: JobsArgs) -> anyhow::Result<()> {
    let jobs = args.server.call(async |client| client.jobs().await)?;
    if args.server.output == Output::Json {
        return print_json(&serde_json::Value::Array(
            jobs.iter().map(job_json).collect(),
        ));
    }
    print_jobs(&jobs);
    Ok(())
}

pub fn describe(args: JobArgs) -> anyhow::Result<()> {
    let job = args.server.call(async |client| client.job(args.id).await)?;
    if args.server.output == Output::Json {
        return print_json(&job_json(&job));
    }
    println!(
        "job {}  {}  ({}, {})",
        job.id, job.name, job.status, job.mode
    );
    println!("query: {}", job.query);
    if !job.modules.is_empty() {
        let modules: Vec<String> = job
            .modules
            .iter()
            .map(|m| format!("{}@{}", m.name, m.version))
            .collect();
        println!("modules: {}", modules.join(", "));
    }
    if !job.savepoint.is_empty() {
        println!("savepoint: {}", job.savepoint);
    }
    if !job.error.is_empty() {
        println!("error: {}", job.error);
    }
    if !job.operators.is_empty() {
        println!("rows in {}  rows out {}", job.rows_in, job.rows_out);
        let rows: Vec<Vec<String>> = job
            .operators
            .iter()
            .map(|o| {
                vec![
                    o.name.clone(),
                    o.parallelism.to_string(),
                    o.rows_in.to_string(),
                    o.rows_out.to_string(),
                    o.late_rows.to_string(),
                    o.watermark_millis
                        .map_or_else(|| "-".to_string(), |w| w.to_string()),
                    format!("{:.1?}", Duration::from_nanos(o.backpressure_nanos)),
                ]
            })
            .collect();
        print_table(
            &[
                "OPERATOR",
                "P",
                "ROWS IN",
                "ROWS OUT",
                "LATE",
                "WATERMARK",
                "BACKPRESSURE",
            ],
            &rows,
        );
    }
    if !job.functions.is_empty() {
        let rows: Vec<Vec<String>> = job
            .functions
            .iter()
            .map(|f| {
                vec![
                    f.name.clone(),
                    f.calls.to_string(),
                    f.rows.to_string(),
                    format!("{:.1?}", Duration::from_nanos(f.nanos)),
                    f.errors.to_string(),
                ]
            })
            .collect();
        print_table(&["FUNCTION", "CALLS", "ROWS", "TIME", "ERRORS"], &rows);
    }
    if !job.checkpoints.is_empty() {
        let rows: Vec<Vec<String>> = job
            .checkpoints
            .iter()
            .map(|c| {
                vec![
                    format!("{}{}", c.id, if c.savepoint { " savepoint" } else { "" }),
                    format!("{} ms", c.duration_millis),
                    c.bytes_written.to_string(),
                    c.state_size.to_string(),
                    c.location.clone(),
                ]
            })
            .collect();
        print_table(
            &["CHECKPOINT", "DURATION", "WRITTEN", "STATE", "LOCATION"],
            &rows,
        );
    }
    for notice in &job.notices {
        println!("notice: {notice}");
    }
    Ok(())
}
