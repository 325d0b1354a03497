// A fixed set of named choices: the models, optimizers, schedules, datasets and kernel paths that
// `train` offers. Each entry has a name, one line of help and a value (usually a factory or the
// enum the name stands for). One registry per choice feeds every place that lists the choices, so
// that they cannot disagree:
//
//   --help        help_text(): one line per entry, "name   help"
//   validation    contains(name), unknown_message(name): the value, the choices and the closest
//                 name ("'resnet19' is not known: expected resnet18, ... or plain (did you mean
//                 resnet18?)"); the caller adds the flag
//   the factory   at(name): the entry's value; throws the same message for an unknown name
//
// Entries keep the order they were given in (the order --help lists them).
#pragma once

#include <algorithm>
#include <string>
#include <utility>
#include <vector>

#include "core/error.h"

namespace minidl {

// "a", "a or b", "a, b or c": how messages and --help list choices.
inline std::string join_or(const std::vector<std::string>& v) {
  std::string s;
  for (size_t i = 0; i < v.size(); ++i) {
    if (i > 0) s += (i + 1 == v.size()) ? " or " : ", ";
    s += v[i];
  }
  return s;
}

// Levenshtein distance (insertions, deletions and substitutions), for "did you mean" hints.
inline size_t edit_distance(const std::string& a, const std::string& b) {
  std::vector<size_t> row(b.size() + 1);
  for (size_t j = 0; j <= b.size(); ++j) row[j] = j;
  for (size_t i = 1; i <= a.size(); ++i) {
    size_t diag = row[0];
    row[0] = i;
    for (size_t j = 1; j <= b.size(); ++j) {
      const size_t up = row[j];
      row[j] = std::min({row[j] + 1, row[j - 1] + 1, diag + (a[i - 1] == b[j - 1] ? 0 : 1)});
      diag = up;
    }
  }
  return row[b.size()];
}

// The candidate closest to `typed` when it is a plausible typo (at most 2 edits away, and fewer
// edits than the candidate has characters), else "".
inline std::string closest_name(const std::string& typed, const std::vector<std::string>& candidates) {
  std::string best;
  size_t best_d = 3;
  for (const std::string& c : candidates) {
    const size_t d = edit_distance(typed, c);
    if (d < best_d && d < c.size()) {
      best_d = d;
      best = c;
    }
  }
  return best;
}

template <typename T>
class Registry {
 public:
  struct Entry {
    std::string name;
    std::string help;  // one line, no trailing full stop
    T value;
  };

  // `what` names an entry in messages ("model", "optimizer").
  Registry(std::string what, std::vector<Entry> entries)
      : what_(std::move(what)), entries_(std::move(entries)) {
    for (size_t i = 0; i < entries_.size(); ++i)
      for (size_t j = 0; j < i; ++j)
        MINIDL_ASSERT(entries_[i].name != entries_[j].name, what_, " '", entries_[i].name,
                      "' registered twice");
  }

  const std::string& what() const { return what_; }
  const std::vector<Entry>& entries() const { return entries_; }

  std::vector<std::string> names() const {
    std::vector<std::string> v;
    for (const Entry& e : entries_) v.push_back(e.name);
    return v;
  }

  // nullptr when there is no such entry.
  const Entry* find(const std::string& name) const {
    for (const Entry& e : entries_)
      if (e.name == name) return &e;
    return nullptr;
  }
  bool contains(const std::string& name) const { return find(name) != nullptr; }

  // The value registered as `name`; throws minidl::Error ("<what> 'x' is not known: ...").
  const T& at(const std::string& name) const {
    const Entry* e = find(name);
    if (e == nullptr) throw_error(str(what_, " ", unknown_message(name)));
    return e->value;
  }

  // "'x' is not known: expected a, b or c" plus " (did you mean b?)" for a near miss. Callers put
  // the flag or the function in front.
  std::string unknown_message(const std::string& name) const {
    const std::string guess = closest_name(name, names());
    return str("'", name, "' is not known: expected ", join_or(names()),
               guess.empty() ? std::string() : str(" (did you mean ", guess, "?)"));
  }

  // One line per entry, the names padded to one column, lines joined by '\n' (no final newline):
  //   "sgd      torch.optim.SGD ..."
  std::string help_text() const {
    size_t width = 0;
    for (const Entry& e : entries_) width = std::max(width, e.name.size());
    std::string s;
    for (const Entry& e : entries_) {
      if (!s.empty()) s += '\n';
      s += e.name + std::string(width + 2 - e.name.size(), ' ') + e.help;
    }
    return s;
  }

 private:
  std::string what_;
  std::vector<Entry> entries_;
};

}  // namespace minidl
