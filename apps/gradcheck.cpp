// gradcheck: check the backward of an op, layer, block or model against float64 central
// differences (engine/gradcheck.h; docs/tutorial/b-write-a-layer.md uses it to grade a layer).
#include <iostream>

#include "engine/gradcheck.h"

int main(int argc, char** argv) { return minidl::gradcheck_main(argc, argv, std::cout, std::cerr); }
