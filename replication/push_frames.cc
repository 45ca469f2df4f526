// push_frames.cc: the frame buffer stash of push_frames.h.
#include "replication/push_frames.h"

namespace ferry::replication {

// The frame buffers pushes leave for the next one (never destroyed: a push
// may run on another thread while the process exits).
BufferStash<std::vector<std::byte>>& frame_buffer_stash() {
  static auto* stash = new BufferStash<std::vector<std::byte>>(kKeptFrameBuffers);
  return *stash;
}

}  // namespace ferry::replication
