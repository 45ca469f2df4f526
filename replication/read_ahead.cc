// read_ahead.cc: see read_ahead.h.
#include "replication/read_ahead.h"

#include <utility>

namespace ferry::replication {

ReadAhead::ReadAhead(std::size_t chunks, std::size_t fetchers, std::size_t ahead,
                     std::function<Status(std::size_t, LentBytes&)> fetch)
    : fetchers_(fetchers), ahead_(ahead), fetch_(std::move(fetch)), state_(chunks, State::kPending),
      lent_(chunks), status_(chunks) {}

ReadAhead::~ReadAhead() {
  {
    std::lock_guard lock(mu_);
    stopping_ = true;
  }
  changed_.notify_all();
  for (auto& t : threads_) t.join();
}

void ReadAhead::advance_locked() {
  while (lowest_untaken_ < state_.size() && state_[lowest_untaken_] == State::kTaken) ++lowest_untaken_;
}

Status ReadAhead::take(std::size_t i, LentBytes& lent) {
  if (i >= state_.size())
    return Status::internal("read-ahead: chunk " + std::to_string(i) + " of " +
                            std::to_string(state_.size()));
  std::unique_lock lock(mu_);
  if (threads_.empty() && fetchers_ > 0) {
    for (std::size_t t = 0; t < fetchers_; ++t) threads_.emplace_back([this] { run(); });
  }
  Status st;
  if (state_[i] == State::kPending || state_[i] == State::kTaken) {
    // No fetcher has come to it yet, or it is asked for again (a reader
    // that reads a chunk twice): fetched here.
    state_[i] = State::kFetching;
    lock.unlock();
    st = fetch_(i, lent);
    lock.lock();
  } else {
    changed_.wait(lock, [&] { return state_[i] == State::kReady; });
    lent = std::move(lent_[i]);
    lent_[i] = {};
    st = std::move(status_[i]);
  }
  state_[i] = State::kTaken;
  advance_locked();
  lock.unlock();
  changed_.notify_all();
  return st;
}

void ReadAhead::run() {
  for (;;) {
    std::size_t i = 0;
    {
      std::unique_lock lock(mu_);
      changed_.wait(lock, [&] {
        while (next_ < state_.size() && state_[next_] != State::kPending) ++next_;
        return stopping_ || next_ >= state_.size() || next_ < lowest_untaken_ + ahead_;
      });
      if (stopping_ || next_ >= state_.size()) return;
      i = next_++;
      state_[i] = State::kFetching;
    }
    LentBytes lent;
    Status st = fetch_(i, lent);
    {
      std::lock_guard lock(mu_);
      lent_[i] = std::move(lent);
      status_[i] = std::move(st);
      state_[i] = State::kReady;
    }
    changed_.notify_all();
  }
}

}  // namespace ferry::replication
