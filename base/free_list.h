// free_list.h: the process's spare objects of one type (coders, decode
// scratch), lent to whichever thread needs one and given back after use.
// Such objects carry multi-MiB buffers and codec contexts; a fresh one per
// call or per thread costs a page fault and the kernel's zeroing for every
// 4 KiB it touches, about as much CPU as the work done in it. A list per type
// for the whole process means a warm object serves the next push, restore or
// batch, and the number ever made is the most in use at once, not the
// number of threads or calls.
#pragma once

#include <cstddef>
#include <memory>
#include <mutex>
#include <utility>
#include <vector>

namespace ferry {

template <typename T>
class FreeList {
 public:
  // More than the threads of any pool ever borrow at once; a list never
  // keeps more (the rest are freed when given back).
  static constexpr std::size_t kMaxKept = 64;

  // The list for T (never destroyed: pool threads may outlive main).
  static FreeList& shared() {
    static auto* list = new FreeList();
    return *list;
  }

  // A given-back object as its last user left it (the most recent one, so
  // its pages are the likeliest still in cache), else a new one.
  std::unique_ptr<T> take() {
    {
      std::lock_guard<std::mutex> lock(mu_);
      if (!free_.empty()) {
        auto t = std::move(free_.back());
        free_.pop_back();
        return t;
      }
    }
    return std::make_unique<T>();
  }
  void give(std::unique_ptr<T> t) {
    if (!t) return;
    std::lock_guard<std::mutex> lock(mu_);
    if (free_.size() < kMaxKept) free_.push_back(std::move(t));
  }

  // take() for the lifetime of a scope: given back when it ends.
  class Loan {
   public:
    explicit Loan(FreeList& list) : list_(list), t_(list.take()) {}
    Loan(const Loan&) = delete;
    Loan& operator=(const Loan&) = delete;
    ~Loan() { list_.give(std::move(t_)); }
    T& operator*() const { return *t_; }
    T* operator->() const { return t_.get(); }

   private:
    FreeList& list_;
    std::unique_ptr<T> t_;
  };

 private:
  std::mutex mu_;
  std::vector<std::unique_ptr<T>> free_;
};

}  // namespace ferry
