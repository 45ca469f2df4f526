// snapshot_name.h: how `ferry push` and ferry-agent name the snapshot of a
// checkpoint directory, one rule for both: "<job>-<directory name>", with
// "-step<N>" added when the directory name does not carry the step. The
// directory name is part of every name, so two checkpoints of one job with
// the same step (a DCP directory and a safetensors export beside it, both
// step 100) get two names instead of the second failing forever with
// "already exists with other contents". Older releases named the agent's
// snapshots "<job>-<step>" and push's "<job>-step<N>"; those names are
// still listed, restored and pruned like any other (a name is only a key).
#pragma once

#include <cstdint>
#include <string>
#include <string_view>

namespace ferry::replication {

// "<job>-<dir_name>" ("llama-step-100"), "<job>-<dir_name>-step<N>" when
// `step` is not 0 and the last run of digits in `dir_name` is not `step`
// ("llama-export-step100"); an empty job or dir_name leaves its part out
// ("snapshot" when both are empty). Bytes outside [A-Za-z0-9._-] become
// '_'; the job part is shortened so the whole fits kMaxSnapshotNameBytes
// (the directory name and step are what tell snapshots of a job apart).
std::string checkpoint_snapshot_name(std::string_view job, std::string_view dir_name, std::uint64_t step);

}  // namespace ferry::replication
