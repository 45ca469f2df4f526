// metrics.h: the metrics the agent exports (base/metrics.h renders them,
// base/metrics_server.h serves them), named and labelled by Prometheus
// conventions: base units, counters end in _total and start at 0 for every
// label value known up front, rates and ratios are left to PromQL (rate()
// of the byte counters), ages too (time() minus a timestamp), and no label
// is named job or instance (Prometheus sets those itself): a training job
// is `ckpt_job`. docs/OPERATIONS.md lists them with the alert rules.
#pragma once

#include <string_view>

#include "base/metrics.h"
#include "base/metrics_server.h"

namespace ferry::agent {

using ferry::Labels;
using ferry::Metrics;
using ferry::MetricsServer;

// The training job's label (never "job": Prometheus's own).
inline constexpr std::string_view kJobLabel = "ckpt_job";

inline constexpr std::string_view kMetricLogicalBytes = "ferry_agent_logical_bytes_total";
inline constexpr std::string_view kMetricWireBytes = "ferry_agent_wire_bytes_total";
// Delta snapshots: the bytes of chunks sent as delta frames, those frames'
// bytes (their ratio, in PromQL, is what deltas buy), and snapshots
// committed by kind.
inline constexpr std::string_view kMetricDeltaLogicalBytes = "ferry_agent_delta_logical_bytes_total";
inline constexpr std::string_view kMetricDeltaFrameBytes = "ferry_agent_delta_frame_bytes_total";
inline constexpr std::string_view kMetricSnapshots = "ferry_agent_snapshots_committed_total";  // {kind=}
inline constexpr std::string_view kSnapshotKinds[] = {"key", "delta", "-"};
inline constexpr std::string_view kMetricSubmitted = "ferry_agent_checkpoints_submitted_total";
inline constexpr std::string_view kMetricFinished = "ferry_agent_checkpoints_finished_total";  // {state=}
inline constexpr std::string_view kMetricErrors = "ferry_agent_errors_total";                  // {kind=}
inline constexpr std::string_view kMetricQueueDepth = "ferry_agent_queue_depth";
inline constexpr std::string_view kMetricLastCommit =
    "ferry_agent_last_commit_timestamp_seconds";  // {ckpt_job=}
inline constexpr std::string_view kMetricRpoForecastSeconds =
    "ferry_agent_rpo_forecast_seconds";                                           // {ckpt_job=}
inline constexpr std::string_view kMetricRpoWarning = "ferry_agent_rpo_warning";  // {ckpt_job=}
inline constexpr std::string_view kMetricRpoTarget = "ferry_agent_rpo_target_seconds";
inline constexpr std::string_view kMetricBacklogBytes = "ferry_agent_backlog_bytes";  // {ckpt_job=}
inline constexpr std::string_view kMetricIncompleteCheckpoints =
    "ferry_agent_incomplete_checkpoints";                                     // {ckpt_job=}
inline constexpr std::string_view kMetricTargetUp = "ferry_agent_target_up";  // {target=}
inline constexpr std::string_view kMetricPaused = "ferry_agent_paused";
inline constexpr std::string_view kMetricEngineInfo = "ferry_agent_engine_info";  // {engine=, reason=}
inline constexpr std::string_view kMetricPushSeconds = "ferry_agent_push_duration_seconds";
inline constexpr std::string_view kMetricJournalFsyncSeconds = "ferry_agent_journal_fsync_duration_seconds";

// Every final state of a checkpoint (kMetricFinished's state label) and
// every kind of error (kMetricErrors's kind label): all start at 0.
inline constexpr std::string_view kFinishedStates[] = {"committed", "skipped", "failed"};
inline constexpr std::string_view kErrorKinds[] = {"push",        "read",    "checkpoint_changed",
                                                   "target_down", "journal", "probe"};

// Describes every metric above (and ferry_build_info) and sets every
// counter to 0.
void describe_agent_metrics(Metrics& m);

}  // namespace ferry::agent
