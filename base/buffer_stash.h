// buffer_stash.h: large buffers kept in this process from one use to the
// next (a push's chunk and frame buffers, for the next push), so that their
// pages are not faulted in and zeroed by the kernel again each time: on the
// full corpus that was about 30,000 page faults, a tenth of the sender's
// CPU, in every push. A kept buffer's pages are given to the kernel to take
// back under memory pressure (MADV_FREE): until it does, they stay mapped
// and a later write uses them without a fault; after it has, they come back
// zeroed on first touch, as fresh memory would. So keeping buffers between
// checkpoints holds no memory the machine needs elsewhere.
#pragma once

#include <sys/mman.h>
#include <unistd.h>

#include <cstddef>
#include <cstdint>
#include <mutex>
#include <vector>

namespace ferry {

// Lets the kernel take back the whole pages inside [p, p + bytes) whenever
// it needs memory (MADV_FREE); their contents become undefined (old bytes or
// zeros). Partial pages at either end are left alone: they may hold other
// data. Best effort: a kernel without MADV_FREE keeps the pages.
inline void lazily_free_pages(void* p, std::size_t bytes) {
  const auto page = static_cast<std::uintptr_t>(::sysconf(_SC_PAGESIZE));
  const auto begin = (reinterpret_cast<std::uintptr_t>(p) + page - 1) / page * page;
  const auto end = (reinterpret_cast<std::uintptr_t>(p) + bytes) / page * page;
  if (end > begin) ::madvise(reinterpret_cast<void*>(begin), end - begin, MADV_FREE);
}

// Buffers (std::vector<std::byte>, AlignedBytes: anything with data() and
// capacity(), default-constructible and movable) kept for a later take().
// Thread-safe. Holds at most max_buffers; contents are never kept (callers
// overwrite every byte they read).
template <typename Buffer>
class BufferStash {
 public:
  explicit BufferStash(std::size_t max_buffers) : max_buffers_(max_buffers) {}

  // The smallest kept buffer with a capacity of min_bytes to max_bytes, or
  // an empty Buffer when none has (a much larger one would hold memory the
  // caller has no use for).
  Buffer take(std::size_t min_bytes, std::size_t max_bytes) {
    std::lock_guard lock(mu_);
    std::size_t best = kept_.size();
    for (std::size_t i = 0; i < kept_.size(); ++i) {
      if (kept_[i].capacity() >= min_bytes && kept_[i].capacity() <= max_bytes &&
          (best == kept_.size() || kept_[i].capacity() < kept_[best].capacity())) {
        best = i;
      }
    }
    if (best == kept_.size()) return Buffer{};
    Buffer b = std::move(kept_[best]);
    kept_.erase(kept_.begin() + static_cast<std::ptrdiff_t>(best));
    return b;
  }

  // Keeps `b` (its pages lazily freed) for a later take(). With max_buffers
  // kept already, the smallest of them all is dropped.
  void keep(Buffer&& b) {
    if (b.capacity() == 0) return;
    lazily_free_pages(b.data(), b.capacity());
    Buffer dropped;  // freed outside the lock
    std::lock_guard lock(mu_);
    kept_.push_back(std::move(b));
    if (kept_.size() <= max_buffers_) return;
    std::size_t smallest = 0;
    for (std::size_t i = 1; i < kept_.size(); ++i) {
      if (kept_[i].capacity() < kept_[smallest].capacity()) smallest = i;
    }
    dropped = std::move(kept_[smallest]);
    kept_.erase(kept_.begin() + static_cast<std::ptrdiff_t>(smallest));
  }

  std::size_t size() {
    std::lock_guard lock(mu_);
    return kept_.size();
  }

 private:
  const std::size_t max_buffers_;
  std::mutex mu_;
  std::vector<Buffer> kept_;
};

}  // namespace ferry
