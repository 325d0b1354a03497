// The documentation agrees with the program: README.md and docs/TRAINING.md show the same
// commands, each of them parses, and docs/TRAINING.md documents every flag `train --help` lists
// (and no flag that does not exist).
#include <catch2/catch.hpp>
#include <filesystem>
#include <fstream>
#include <regex>
#include <set>
#include <sstream>

#include "engine/cli.h"
#include "engine_test_util.h"

using namespace minidl;
using namespace minidl::test;
namespace fs = std::filesystem;

namespace {

std::string read_doc(const std::string& name) {
  const fs::path p = fs::path(MINIDL_SOURCE_DIR) / name;
  std::ifstream f(p);
  REQUIRE(f.good());
  std::stringstream ss;
  ss << f.rdbuf();
  return ss.str();
}

// The ```sh blocks of a Markdown file.
std::vector<std::string> sh_blocks(const std::string& md) {
  std::vector<std::string> out;
  size_t pos = 0;
  while ((pos = md.find("```sh\n", pos)) != std::string::npos) {
    const size_t end = md.find("```", pos + 6);
    out.push_back(md.substr(pos + 6, end - pos - 6));
    pos = end + 3;
  }
  return out;
}

// The commands of a block: continuation lines joined, comments dropped, split into words.
std::vector<std::vector<std::string>> commands(const std::string& block) {
  std::vector<std::vector<std::string>> out;
  std::string joined = std::regex_replace(block, std::regex("\\\\\n"), " ");
  std::stringstream lines(joined);
  std::string line;
  while (std::getline(lines, line)) {
    if (line.empty() || line[0] == '#') continue;
    std::stringstream words(line);
    std::vector<std::string> w;
    for (std::string x; words >> x;) w.push_back(x);
    out.push_back(w);
  }
  return out;
}

}  // namespace

TEST_CASE("README and TRAINING.md show the same quick command and recipes, and they parse",
          "[engine][docs]") {
  const std::vector<std::string> readme = sh_blocks(read_doc("README.md"));
  const std::vector<std::string> training = sh_blocks(read_doc("docs/TRAINING.md"));
  auto find = [](const std::vector<std::string>& blocks, const std::string& start) {
    for (const std::string& b : blocks)
      if (b.rfind(start, 0) == 0) return b;
    return std::string();
  };
  const std::string quick = find(training, "build/train --model plain");
  const std::string recipes = find(training, "# ResNet-50");
  REQUIRE_FALSE(quick.empty());
  REQUIRE_FALSE(recipes.empty());
  CHECK(find(readme, "build/train --model plain") == quick);
  CHECK(find(readme, "# ResNet-50") == recipes);
  CHECK_THAT(quick, Catch::Contains("--test-subset"));

  // Every command of both blocks is one the program accepts (with a --data that exists).
  const fs::path data = scratch_dir("docs_data");
  for (const std::string& block : {quick, recipes}) {
    for (std::vector<std::string> cmd : commands(block)) {
      INFO(block);
      REQUIRE(cmd.front() == "build/train");
      cmd.erase(cmd.begin());
      cmd.insert(cmd.end(), {"--data", data.string()});
      CHECK_NOTHROW(parse_args(cmd));
      if (block == recipes) CHECK(std::find(cmd.begin(), cmd.end(), "--val-split") != cmd.end());
    }
  }
}

TEST_CASE("TRAINING.md documents every flag of train --help, and only those", "[engine][docs]") {
  const std::string help = train_help();
  const std::string doc = read_doc("docs/TRAINING.md");
  std::set<std::string> in_help, in_tables;
  const std::regex flag("--[a-z][a-z0-9-]*");
  for (auto it = std::sregex_iterator(help.begin(), help.end(), flag); it != std::sregex_iterator();
       ++it)
    in_help.insert(it->str());
  // The first column of the flag tables: lines "| `--flag ...` ...".
  std::stringstream lines(doc);
  std::string line;
  while (std::getline(lines, line)) {
    if (line.rfind("| `--", 0) != 0) continue;
    const std::string first = line.substr(0, line.find(" |", 2));
    for (auto it = std::sregex_iterator(first.begin(), first.end(), flag);
         it != std::sregex_iterator(); ++it)
      in_tables.insert(it->str());
  }
  for (const std::string& f : in_help) {
    if (f == "--help") continue;
    INFO(f << " is in --help but not in TRAINING.md's tables");
    CHECK(in_tables.count(f) == 1);
  }
  for (const std::string& f : in_tables) {
    INFO(f << " is documented but train --help does not list it");
    CHECK(in_help.count(f) == 1);
  }
  // What --help says about the default-on flags.
  CHECK_THAT(help, Catch::Contains("default: on"));
  // The exit codes documented are those of engine/app.h.
  for (const char* code : {"130", "143", "exit code", "0 done", "1 error", "2 usage error"}) {
    INFO(code);
    CHECK_THAT(doc, Catch::Contains(code, Catch::CaseSensitive::No));
  }
}
