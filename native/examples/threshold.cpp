// A C++ operator for `clara run` (the RAII wrapper): thresholds the float32 input `volume`
// into the dynamic uint8 output `mask` (sized like the volume) and counts the voxels above
// the level in the static output `voxels` (uint64). The level comes from $LEVEL.
//
//   make -C native examples && clara run examples/ct-native.yaml
#include <cstdint>
#include <cstdlib>
#include <iostream>

#include "clara_fastio.hpp"

int main() try {
    const char *text = std::getenv("LEVEL");
    const float level = text ? std::strtof(text, nullptr) : 0.5f;
    clara::Context ctx = clara::Context::of_operator();
    clara::Allocation volume = ctx.variable("volume");  // an input: read-only
    clara::Mapping<float> in = volume.map<float>();
    clara::Allocation mask = ctx.allocate("mask", volume.dims());  // dynamic output
    std::uint64_t above = 0;
    {
        clara::Mapping<std::uint8_t> out = mask.map<std::uint8_t>(clara::write);
        for (std::size_t i = 0; i < in.size(); i++) above += out[i] = in[i] > level;
    }  // unmapped here: complete (incomplete if an exception had left the block)
    ctx.variable("voxels").map<std::uint64_t>(clara::write)[0] = above;  // static output
    std::cout << "threshold (C++): " << above << " of " << in.size() << " voxels above "
              << level << std::endl;
    return 0;
} catch (const clara::Error &error) {
    std::cerr << "threshold: error: " << error.what() << std::endl;
    return error.code();
}
