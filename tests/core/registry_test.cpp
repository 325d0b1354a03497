// Registry<T>: lookup, the messages for an unknown name, and the --help lines.
#include <catch2/catch.hpp>

#include "core/registry.h"

using namespace minidl;

namespace {

const Registry<int>& colours() {
  static const Registry<int> r("colour", {{"red", "the colour of blood", 1},
                                          {"green", "the colour of grass", 2},
                                          {"blue", "the colour of the sky", 3}});
  return r;
}

}  // namespace

TEST_CASE("registry: entries by name, in the order given", "[core][registry]") {
  const Registry<int>& r = colours();
  CHECK(r.names() == std::vector<std::string>{"red", "green", "blue"});
  CHECK(r.at("green") == 2);
  CHECK(r.contains("blue"));
  CHECK_FALSE(r.contains("Blue"));  // names are exact
  CHECK(r.find("yellow") == nullptr);
  REQUIRE(r.find("red") != nullptr);
  CHECK(r.find("red")->help == "the colour of blood");
}

TEST_CASE("registry: an unknown name is reported with the choices and the closest name",
          "[core][registry][errors]") {
  const Registry<int>& r = colours();
  CHECK(r.unknown_message("gren") ==
        "'gren' is not known: expected red, green or blue (did you mean green?)");
  // Nothing close: no guess.
  CHECK(r.unknown_message("purple") == "'purple' is not known: expected red, green or blue");
  REQUIRE_THROWS_WITH(r.at("bleu"), "colour 'bleu' is not known: expected red, green or blue "
                                    "(did you mean blue?)");
  // Two entries of one name are a programming error.
  REQUIRE_THROWS_WITH(Registry<int>("thing", {{"a", "", 1}, {"a", "", 2}}),
                      Catch::Contains("thing 'a' registered twice"));
}

TEST_CASE("registry: help lines align the names", "[core][registry]") {
  CHECK(colours().help_text() ==
        "red    the colour of blood\n"
        "green  the colour of grass\n"
        "blue   the colour of the sky");
}

TEST_CASE("join_or, edit_distance, closest_name", "[core][registry]") {
  CHECK(join_or({}) == "");
  CHECK(join_or({"a"}) == "a");
  CHECK(join_or({"a", "b"}) == "a or b");
  CHECK(join_or({"a", "b", "c"}) == "a, b or c");
  CHECK(edit_distance("kitten", "sitting") == 3);
  CHECK(edit_distance("", "abc") == 3);
  CHECK(edit_distance("resnet19", "resnet18") == 1);
  CHECK(closest_name("resnet19", {"resnet18", "resnet110", "alexnet"}) == "resnet18");
  CHECK(closest_name("xy", {"ab"}).empty());  // 2 edits of 2 characters: not a typo
  CHECK(closest_name("lstm", {"sgd", "adam"}).empty());
}
