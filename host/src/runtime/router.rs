//! Output edges of one subtask: which downstream subtask gets which rows.
//!
//! Hash edges hash the key columns (DataFusion's hash, fixed seed, so the same key lands in the
//! same key group in every process), take the key group as `hash % max_parallelism`, and send
//! it to the subtask that owns that key group's range, as Flink does.

use std::sync::Arc;

use arrow::array::{ArrayRef, UInt32Array};
use arrow::compute::take_record_batch;
use arrow::record_batch::RecordBatch;
use datafusion_common::hash_utils::{RandomState, create_hashes};
use datafusion_expr::execution_props::ExecutionProps;
use datafusion_expr::physical_planning_context::PhysicalPlanningContext;
use datafusion_physical_expr::{PhysicalExpr, create_physical_expr};
use tokio::sync::mpsc;

use super::{Envelope, Message, RuntimeError};
use crate::plan::{Graph, Partitioning};

#[derive(Debug, Clone)]
enum Route {
    Forward(mpsc::Sender<Envelope>),
    Rebalance {
        targets: Vec<mpsc::Sender<Envelope>>,
        next: usize,
    },
    Broadcast(Vec<mpsc::Sender<Envelope>>),
    Hash {
        keys: Vec<Arc<dyn PhysicalExpr>>,
        targets: Vec<mpsc::Sender<Envelope>>,
        max_parallelism: usize,
    },
}

/// The output edges of one subtask.
#[derive(Debug, Default, Clone)]
pub struct Router {
    routes: Vec<Route>,
    /// Per route, how the downstream subtask knows this sender: which of its inputs the edge
    /// is, and this subtask's number among all its upstream subtasks.
    identities: Vec<(usize, usize)>,
}

/// A batch bound for `(route, target)`.
pub type Part = (usize, usize, RecordBatch);

/// The subtask (of `parallelism`) owning `key_group` (of `max_parallelism`): contiguous ranges.
pub fn subtask_of_key_group(key_group: usize, max_parallelism: usize, parallelism: usize) -> usize {
    key_group * parallelism / max_parallelism
}

impl Router {
    pub(crate) fn new(
        graph: &Graph,
        node: usize,
        subtask: usize,
        senders: &[Vec<mpsc::Sender<Envelope>>],
    ) -> Result<Self, RuntimeError> {
        let mut routes = Vec::new();
        let mut identities = Vec::new();
        for edge in graph.outputs_of(node) {
            // Senders are numbered over all the downstream node's input edges, in order.
            let mut input = 0;
            let mut first_sender = 0;
            for (index, other) in graph.inputs_of(edge.to).enumerate() {
                if std::ptr::eq(other, edge) {
                    input = index;
                    break;
                }
                first_sender += graph.nodes[other.from].parallelism;
            }
            identities.push((input, first_sender + subtask));
            let targets = senders[edge.to].clone();
            let route = match &edge.partitioning {
                Partitioning::Forward => {
                    Route::Forward(targets.get(subtask).cloned().ok_or_else(|| {
                        RuntimeError::Internal("forward edge out of range".into())
                    })?)
                }
                Partitioning::Rebalance => Route::Rebalance {
                    next: subtask % targets.len().max(1),
                    targets,
                },
                Partitioning::Broadcast => Route::Broadcast(targets),
                Partitioning::Hash(exprs) => {
                    let schema = match &graph.nodes[edge.to].operator {
                        crate::plan::OperatorSpec::Aggregate { input_schema, .. }
                        | crate::plan::OperatorSpec::WindowAggregate { input_schema, .. }
                        | crate::plan::OperatorSpec::TopN { input_schema, .. }
                        | crate::plan::OperatorSpec::UpsertNormalize { input_schema, .. } => {
                            input_schema.clone()
                        }
                        crate::plan::OperatorSpec::Join {
                            left_schema,
                            right_schema,
                            ..
                        } => {
                            if input == 0 {
                                left_schema.clone()
                            } else {
                                right_schema.clone()
                            }
                        }
                        _ => {
                            return Err(RuntimeError::Internal(
                                "hash edge into a non-keyed operator".into(),
                            ));
                        }
                    };
                    let props = ExecutionProps::new();
                    let keys = exprs
                        .iter()
                        .map(|e| {
                            create_physical_expr(
                                e,
                                &schema,
                                &props,
                                &PhysicalPlanningContext::default(),
                            )
                        })
                        .collect::<Result<Vec<_>, _>>()
                        .map_err(|e| RuntimeError::Internal(format!("hash key: {e}")))?;
                    Route::Hash {
                        keys,
                        targets,
                        max_parallelism: graph.max_parallelism,
                    }
                }
            };
            routes.push(route);
        }
        Ok(Self { routes, identities })
    }

    /// Splits a batch over the routes (CPU work: call it on a blocking thread).
    pub fn partition(&mut self, batch: &RecordBatch) -> Result<Vec<Part>, String> {
        let mut parts = Vec::new();
        for (index, route) in self.routes.iter_mut().enumerate() {
            match route {
                Route::Forward(_) => parts.push((index, 0, batch.clone())),
                Route::Rebalance { targets, next } => {
                    parts.push((index, *next, batch.clone()));
                    *next = (*next + 1) % targets.len().max(1);
                }
                Route::Broadcast(targets) => {
                    for target in 0..targets.len() {
                        parts.push((index, target, batch.clone()));
                    }
                }
                Route::Hash {
                    keys,
                    targets,
                    max_parallelism,
                } => {
                    if targets.len() == 1 {
                        parts.push((index, 0, batch.clone()));
                        continue;
                    }
                    let columns: Vec<ArrayRef> = keys
                        .iter()
                        .map(|k| {
                            k.evaluate(batch)
                                .and_then(|v| v.into_array(batch.num_rows()))
                        })
                        .collect::<Result<_, _>>()
                        .map_err(|e| format!("cannot compute a key: {e}"))?;
                    let mut hashes = vec![0u64; batch.num_rows()];
                    create_hashes(&columns, &RandomState::with_seed(0), &mut hashes)
                        .map_err(|e| format!("cannot hash a key: {e}"))?;
                    let mut rows: Vec<Vec<u32>> = vec![Vec::new(); targets.len()];
                    for (row, hash) in hashes.iter().enumerate() {
                        let key_group = (*hash % *max_parallelism as u64) as usize;
                        let target =
                            subtask_of_key_group(key_group, *max_parallelism, targets.len());
                        rows[target].push(row as u32);
                    }
                    for (target, rows) in rows.into_iter().enumerate() {
                        if rows.is_empty() {
                            continue;
                        }
                        let part = take_record_batch(batch, &UInt32Array::from(rows))
                            .map_err(|e| format!("cannot split a batch: {e}"))?;
                        parts.push((index, target, part));
                    }
                }
            }
        }
        Ok(parts)
    }

    fn target(&self, route: usize, target: usize) -> Option<&mpsc::Sender<Envelope>> {
        match self.routes.get(route)? {
            Route::Forward(sender) => Some(sender),
            Route::Rebalance { targets, .. }
            | Route::Broadcast(targets)
            | Route::Hash { targets, .. } => targets.get(target),
        }
    }

    /// Sends the parts; `false` when a downstream subtask has gone (it finished or failed).
    pub async fn send(&self, parts: Vec<Part>) -> bool {
        for (route, target, batch) in parts {
            let Some(channel) = self.target(route, target) else {
                return false;
            };
            let (input, sender) = self.identities[route];
            let envelope = Envelope {
                input,
                sender,
                message: Message::Batch(batch),
            };
            if channel.send(envelope).await.is_err() {
                return false;
            }
        }
        true
    }

    /// Tells every downstream subtask this one has ended.
    pub async fn end(&self) {
        self.broadcast(Message::EndOfInput).await;
    }

    /// Sends `message` to every downstream subtask; `false` when one has gone.
    pub async fn broadcast(&self, message: Message) -> bool {
        let mut open = true;
        for (route, &(input, sender)) in self.routes.iter().zip(&self.identities) {
            let channels: Vec<&mpsc::Sender<Envelope>> = match route {
                Route::Forward(channel) => vec![channel],
                Route::Rebalance { targets, .. }
                | Route::Broadcast(targets)
                | Route::Hash { targets, .. } => targets.iter().collect(),
            };
            for channel in channels {
                let envelope = Envelope {
                    input,
                    sender,
                    message: message.clone(),
                };
                open &= channel.send(envelope).await.is_ok();
            }
        }
        open
    }
}

#[cfg(test)]
mod tests {
    use super::subtask_of_key_group;

    #[test]
    fn key_groups_are_owned_in_contiguous_ranges() {
        for parallelism in 1..=7 {
            let owners: Vec<usize> = (0..128)
                .map(|kg| subtask_of_key_group(kg, 128, parallelism))
                .collect();
            assert!(owners.windows(2).all(|w| w[0] <= w[1]));
            assert_eq!(owners[0], 0);
            assert_eq!(owners[127], parallelism - 1);
        }
    }
}
