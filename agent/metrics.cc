// metrics.cc: see metrics.h.
#include "agent/metrics.h"

namespace ferry::agent {

void describe_agent_metrics(Metrics& m) {
  describe_build_info(m);
  m.describe(kMetricLogicalBytes, "counter",
             "Checkpoint bytes committed at the DR site (before compression)");
  m.describe(kMetricWireBytes, "counter", "Bytes sent to DR targets (after compression and dedup)");
  m.describe(kMetricDeltaLogicalBytes, "counter",
             "Checkpoint bytes sent as delta frames (before compression)");
  m.describe(kMetricDeltaFrameBytes, "counter", "Bytes of the delta frames that carried them");
  m.describe(kMetricSnapshots, "counter", "Snapshots committed, by kind: key, delta, - (no origin recorded)");
  m.describe(kMetricSubmitted, "counter", "Checkpoints found complete (or handed over) and queued");
  m.describe(kMetricFinished, "counter", "Checkpoints finished, by final state: committed, skipped, failed");
  m.describe(kMetricErrors, "counter",
             "Errors seen by the agent, by kind (push, read, checkpoint_changed, target_down, journal, "
             "probe)");
  m.describe(kMetricQueueDepth, "gauge", "Checkpoints queued or in flight");
  m.describe(kMetricLastCommit, "gauge",
             "Time (Unix seconds) of the newest checkpoint committed at the DR site, per job; absent before "
             "the first commit");
  m.describe(kMetricRpoForecastSeconds, "gauge",
             "Forecast RPO once the current backlog drains at the current throughput, per job");
  m.describe(kMetricRpoWarning, "gauge",
             "1 while the job's RPO target is breached or forecast to be, with work waiting (as ferry status "
             "warns)");
  m.describe(kMetricRpoTarget, "gauge", "The RPO target (--rpo_target_s)");
  m.describe(kMetricBacklogBytes, "gauge", "Bytes of checkpoints not yet committed, per job");
  m.describe(
      kMetricIncompleteCheckpoints, "gauge",
      "Checkpoint directories newer than the DR copy still not complete after the grace period, per job");
  m.describe(kMetricTargetUp, "gauge", "1 when the DR target passes its health probes");
  m.describe(kMetricPaused, "gauge", "1 when replication is paused for every job");
  m.describe(kMetricEngineInfo, "gauge", "1 for the codec engine in use (cpu or gpu) and why it was chosen");
  m.describe_histogram(kMetricPushSeconds, "Seconds one push of a checkpoint to its target(s) took",
                       kDurationBucketsSeconds);
  m.describe_histogram(kMetricJournalFsyncSeconds, "Seconds the journal's fdatasync took, per record",
                       kLatencyBucketsSeconds);
  m.add(kMetricLogicalBytes, {}, 0);
  m.add(kMetricWireBytes, {}, 0);
  m.add(kMetricDeltaLogicalBytes, {}, 0);
  m.add(kMetricDeltaFrameBytes, {}, 0);
  for (auto k : kSnapshotKinds) m.add(kMetricSnapshots, {{"kind", std::string(k)}}, 0);
  m.add(kMetricSubmitted, {}, 0);
  for (auto s : kFinishedStates) m.add(kMetricFinished, {{"state", std::string(s)}}, 0);
  for (auto k : kErrorKinds) m.add(kMetricErrors, {{"kind", std::string(k)}}, 0);
  m.set_histogram(kMetricPushSeconds, {}, HistogramCounts(kDurationBucketsSeconds));
  m.set_histogram(kMetricJournalFsyncSeconds, {}, HistogramCounts(kLatencyBucketsSeconds));
}

}  // namespace ferry::agent
