// What both benchmark programs print in their header and how they read their flags: the commit,
// the date, the machine, and a small "--flag value" parser whose errors name the flag.
#pragma once

#include <omp.h>

#include <cstdio>
#include <cstdlib>
#include <ctime>
#include <fstream>
#include <map>
#include <string>
#include <vector>

#include "core/device.h"
#include "core/error.h"

namespace minidl::bench {

// Output of a shell command with trailing newlines removed ("" when it fails).
inline std::string shell_output(const std::string& cmd) {
  FILE* f = popen(cmd.c_str(), "r");
  if (!f) return "";
  std::string out;
  char buf[256];
  while (fgets(buf, sizeof buf, f)) out += buf;
  if (pclose(f) != 0) return "";
  while (!out.empty() && (out.back() == '\n' || out.back() == '\r')) out.pop_back();
  return out;
}

// The commit being measured: $MINIDL_COMMIT when set (a copy of the tree without .git, such as the
// device machine's), else `git rev-parse --short HEAD` with "-dirty" when tracked files differ
// from it, else "unknown".
inline std::string git_commit() {
  if (const char* c = std::getenv("MINIDL_COMMIT"); c && *c) return c;
  std::string c = shell_output("git rev-parse --short HEAD 2>/dev/null");
  if (c.empty()) return "unknown";
  if (shell_output("git diff --quiet HEAD -- 2>/dev/null && echo clean") != "clean") c += "-dirty";
  return c;
}

inline std::string utc_now() {
  const std::time_t t = std::time(nullptr);
  char buf[64];
  std::strftime(buf, sizeof buf, "%Y-%m-%d %H:%M UTC", std::gmtime(&t));
  return buf;
}

// "AMD EPYC 7B13, 2 OpenMP threads, load average 0.12": the model name lscpu shows (from
// /proc/cpuinfo) and the 1-minute load average, since CPU timings on a busy machine mean little.
inline std::string cpu_summary() {
  std::ifstream f("/proc/cpuinfo");
  std::string line, model = "unknown CPU";
  while (std::getline(f, line))
    if (line.rfind("model name", 0) == 0) {
      model = line.substr(line.find(':') + 2);
      break;
    }
  std::string load = "unknown";
  std::ifstream("/proc/loadavg") >> load;
  return str(model, ", ", omp_get_max_threads(), " OpenMP threads, load average ", load);
}

inline std::string device_summary(const Device& d) {
  return d.is_cuda() ? cuda_device_summary() : "cpu: " + cpu_summary();
}

inline std::string command_line(int argc, char** argv) {
  std::string s;
  for (int i = 0; i < argc; ++i) {
    if (i) s += ' ';
    s += argv[i];
  }
  return s;
}

// "--name value" and "--name=value" pairs; "--name" alone is a switch with value "1". Unknown names
// are an error that lists the known ones.
class Args {
 public:
  Args(int argc, char** argv, const std::vector<std::string>& known, const std::string& program) {
    for (int i = 1; i < argc; ++i) {
      std::string a = argv[i];
      MINIDL_CHECK(a.rfind("--", 0) == 0, program, ": unexpected argument '", a,
                   "' (flags start with --; try --help)");
      std::string name = a.substr(2), value = "1";
      if (const size_t eq = name.find('='); eq != std::string::npos) {
        value = name.substr(eq + 1);
        name = name.substr(0, eq);
      } else if (i + 1 < argc && std::string(argv[i + 1]).rfind("--", 0) != 0) {
        value = argv[++i];
      }
      bool ok = name == "help";
      for (const auto& k : known) ok = ok || k == name;
      if (!ok) {
        std::string list;
        for (const auto& k : known) list += " --" + k;
        throw_error(str(program, ": unknown flag --", name, " (known:", list, ")"));
      }
      values_[name] = value;
    }
  }
  bool has(const std::string& n) const { return values_.count(n) > 0; }
  std::string get(const std::string& n, const std::string& def) const {
    auto it = values_.find(n);
    return it == values_.end() ? def : it->second;
  }
  int64_t get_int(const std::string& n, int64_t def) const {
    if (!has(n)) return def;
    const std::string v = values_.at(n);
    size_t used = 0;
    int64_t x = 0;
    try {
      x = std::stoll(v, &used);
    } catch (const std::exception&) {
      used = 0;
    }
    MINIDL_CHECK(used == v.size() && !v.empty(), "--", n, ": expected an integer, got '", v, "'");
    return x;
  }
  double get_double(const std::string& n, double def) const {
    if (!has(n)) return def;
    const std::string v = values_.at(n);
    size_t used = 0;
    double x = 0;
    try {
      x = std::stod(v, &used);
    } catch (const std::exception&) {
      used = 0;
    }
    MINIDL_CHECK(used == v.size() && !v.empty(), "--", n, ": expected a number, got '", v, "'");
    return x;
  }

 private:
  std::map<std::string, std::string> values_;
};

// Splits "a,b,c" into its non-empty parts.
inline std::vector<std::string> split_commas(const std::string& s) {
  std::vector<std::string> out;
  std::string cur;
  for (char c : s) {
    if (c == ',') {
      if (!cur.empty()) out.push_back(cur);
      cur.clear();
    } else {
      cur += c;
    }
  }
  if (!cur.empty()) out.push_back(cur);
  return out;
}

// A CSV field, quoted when it holds a comma, a quote or a newline.
inline std::string csv_field(const std::string& s) {
  if (s.find_first_of(",\"\n") == std::string::npos) return s;
  std::string q = "\"";
  for (char c : s) q += c == '"' ? std::string("\"\"") : std::string(1, c);
  return q + "\"";
}

}  // namespace minidl::bench
