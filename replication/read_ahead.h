// read_ahead.h: frames fetched ahead of the threads that decode them. A
// restore from an object store waits on the network for each ranged GET;
// when only the decoding threads fetch, GETs in flight are as many as the
// threads, and many threads on few cores cost CPU of their own. Here
// `fetchers` threads lend the chunks of a manifest in order, at most `ahead`
// chunks past the first one the reader has not taken, while the reader's
// threads decode what has arrived (one ranged GET of an S3 read window
// serves the records after it, so a fetcher also brings its neighbours).
// A chunk the reader asks for before a fetcher reached it is fetched by the
// reader itself, so any order of asking is served.
#pragma once

#include <condition_variable>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <mutex>
#include <thread>
#include <vector>

#include "base/lent_bytes.h"
#include "base/status.h"

namespace ferry::replication {

class ReadAhead {
 public:
  // fetch(i, lent): lends chunk i (thread-safe, called from several
  // threads at once). The fetchers start at the first take().
  ReadAhead(std::size_t chunks, std::size_t fetchers, std::size_t ahead,
            std::function<Status(std::size_t, LentBytes&)> fetch);
  ~ReadAhead();  // stops the fetchers (each finishes its fetch) and joins them
  ReadAhead(const ReadAhead&) = delete;
  ReadAhead& operator=(const ReadAhead&) = delete;

  // Chunk i: what its fetch lent, or its fetch's error (fetched again when
  // asked for a second time).
  Status take(std::size_t i, LentBytes& lent);

 private:
  enum class State : std::uint8_t { kPending, kFetching, kReady, kTaken };
  void run();
  void advance_locked();  // lowest_untaken_ past the taken chunks

  const std::size_t fetchers_;
  const std::size_t ahead_;
  const std::function<Status(std::size_t, LentBytes&)> fetch_;
  std::mutex mu_;
  std::condition_variable changed_;
  std::vector<State> state_;
  std::vector<LentBytes> lent_;
  std::vector<Status> status_;
  std::size_t next_ = 0;            // the next chunk a fetcher looks at
  std::size_t lowest_untaken_ = 0;  // the first chunk not taken
  bool stopping_ = false;
  std::vector<std::thread> threads_;  // started at the first take()
};

}  // namespace ferry::replication
