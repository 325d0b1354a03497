// The gradcheck program (engine/gradcheck.h): what a user sees for a correct backward, for each
// planted bug, in float32, for a model, and for bad flags.
#include <catch2/catch.hpp>

#include <sstream>
#include <string>
#include <vector>

#include "engine/gradcheck.h"

using namespace minidl;

namespace {

struct Run {
  int code;
  std::string out, err;
};

Run gradcheck(std::vector<std::string> args) {
  args.insert(args.begin(), "gradcheck");
  std::vector<const char*> argv;
  for (const auto& a : args) argv.push_back(a.c_str());
  std::ostringstream out, err;
  const int code = gradcheck_main(static_cast<int>(argv.size()), argv.data(), out, err);
  return {code, out.str(), err.str()};
}

// The result column of the table row of `tensor`.
std::string row_result(const std::string& out, const std::string& tensor) {
  std::istringstream ss(out);
  for (std::string line; std::getline(ss, line);)
    if (line.rfind(tensor + " ", 0) == 0) return line.substr(line.find_last_of(' ') + 1);
  return "no row";
}

}  // namespace

TEST_CASE("gradcheck app: a correct backward passes, per tensor, in float64 and float32",
          "[gradcheck][app]") {
  for (const char* dtype : {"float64", "float32"}) {
    INFO(dtype);
    const Run r = gradcheck({"--target", "conv2d", "--dtype", dtype, "--shape", "2,3,5,7"});
    INFO(r.out << r.err);
    CHECK(r.code == 0);
    CHECK(row_result(r.out, "input") == "PASS");
    CHECK(row_result(r.out, "weight") == "PASS");
    CHECK(row_result(r.out, "bias") == "PASS");
    CHECK(r.out.find("PASS: all 3 tensors") != std::string::npos);
  }
  const Run bn = gradcheck({"--target", "batchnorm", "--mode", "eval"});
  INFO(bn.out);
  CHECK(bn.code == 0);
}

TEST_CASE("gradcheck app: --break shows each planted bug as a failure of the right tensor",
          "[gradcheck][app]") {
  const Run sign = gradcheck({"--target", "linear", "--break", "weight-sign"});
  INFO(sign.out);
  CHECK(sign.code == 1);
  CHECK(row_result(sign.out, "input") == "PASS");
  CHECK(row_result(sign.out, "weight") == "FAIL");
  CHECK(row_result(sign.out, "bias") == "PASS");
  CHECK(sign.out.find("FAIL: 1 of 3 tensors") != std::string::npos);

  const Run scale = gradcheck({"--target", "tanh", "--break", "input-scale"});
  INFO(scale.out);
  CHECK(scale.code == 1);
  CHECK(row_result(scale.out, "input") == "FAIL");

  const Run twice = gradcheck({"--target", "batchnorm", "--break", "accumulate-twice"});
  INFO(twice.out);
  CHECK(twice.code == 1);
  CHECK(row_result(twice.out, "weight") == "FAIL");
  CHECK(row_result(twice.out, "bias") == "FAIL");
  CHECK(row_result(twice.out, "input") == "PASS");
}

TEST_CASE("gradcheck app: a block, a model and the tutorial's layer", "[gradcheck][app]") {
  const Run block = gradcheck({"--target", "basic_block", "--stride", "2", "--max-elements", "4"});
  INFO(block.out);
  CHECK(block.code == 0);
  CHECK(row_result(block.out, "downsample.0.weight") == "PASS");

  // A model's first convolution computes no input gradient: only parameters are checked.
  const Run model = gradcheck({"--target", "resnet20", "--shape", "2,3,4,4", "--max-elements", "1"});
  INFO(model.out);
  CHECK(model.code == 0);
  CHECK(row_result(model.out, "fc.weight") == "PASS");
  CHECK(row_result(model.out, "input") == "no row");

  CHECK(gradcheck({"--target", "student"}).code == 1);  // the skeleton's TODOs
  CHECK(gradcheck({"--target", "student-solution"}).code == 0);
}

TEST_CASE("gradcheck app: usage errors exit 2 and name the fix", "[gradcheck][app]") {
  const Run typo = gradcheck({"--target", "conv2", "--shape", "1,3,4,4"});
  CHECK(typo.code == 2);
  CHECK(typo.err.find("did you mean conv2d") != std::string::npos);
  const Run shape = gradcheck({"--target", "conv2d", "--shape", "2,x,4"});
  CHECK(shape.code == 2);
  CHECK(shape.err.find("--shape") != std::string::npos);
  const Run nobias = gradcheck({"--target", "relu", "--break", "weight-sign"});
  CHECK(nobias.code == 2);
  CHECK(nobias.err.find("no parameters") != std::string::npos);
  const Run list = gradcheck({"--list"});
  CHECK(list.code == 0);
  CHECK(list.out.find("student-solution") != std::string::npos);
  CHECK(list.out.find("accumulate-twice") != std::string::npos);
}

TEST_CASE("gradcheck app: --channels-last checks the backward on an NHWC input",
          "[gradcheck][app][channels_last]") {
  for (const char* target : {"tanh", "flatten", "dropout"}) {
    INFO(target);
    const Run r = gradcheck({"--target", target, "--shape", "2,3,5,7", "--channels-last"});
    INFO(r.out << r.err);
    CHECK(r.code == 0);
    CHECK(r.out.find("(2, 3, 5, 7) channels_last") != std::string::npos);
    CHECK(row_result(r.out, "input") == "PASS");
  }
  const Run scale =
      gradcheck({"--target", "tanh", "--shape", "2,3,5,7", "--channels-last", "--break",
                 "input-scale"});
  CHECK(scale.code == 1);
  CHECK(row_result(scale.out, "input") == "FAIL");
  const Run flat = gradcheck({"--target", "linear", "--shape", "2,6", "--channels-last"});
  CHECK(flat.code == 2);
  CHECK(flat.err.find("--channels-last: the input (2, 6) is not 4-D") != std::string::npos);
}

TEST_CASE("gradcheck app: --channels-last on convolution, batchnorm, pooling, a block and a model",
          "[gradcheck][app][channels_last][channels_last_ops]") {
  for (const std::vector<std::string>& args : std::vector<std::vector<std::string>>{
           {"--target", "conv2d", "--shape", "2,3,5,7", "--stride", "2"},
           {"--target", "conv2d", "--shape", "2,3,5,7", "--dtype", "float32"},
           {"--target", "batchnorm", "--shape", "2,3,5,7"},
           {"--target", "maxpool2d", "--shape", "2,3,5,7"},
           {"--target", "avgpool2d", "--shape", "2,3,5,7"},
           {"--target", "global_avgpool", "--shape", "2,3,5,7"},
           {"--target", "basic_block", "--stride", "2", "--max-elements", "4"},
           {"--target", "alexnet", "--max-elements", "1"}}) {
    std::vector<std::string> a = args;
    a.push_back("--channels-last");
    const Run r = gradcheck(a);
    INFO(args[1] << "\n" << r.out << r.err);
    CHECK(r.code == 0);
  }
}
