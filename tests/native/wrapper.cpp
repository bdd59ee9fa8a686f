// The C++ wrapper end to end: argv = CONTEXT INPUT OUTPUT. Reads the float32 INPUT
// through a typed view, publishes float64 [sum, count] as OUTPUT, and checks that errors
// arrive as clara::Error with the C code. Prints "dims D0 D1 ok" on success.
#include <cstdio>
#include <iostream>
#include <string>

#include "clara_fastio.hpp"

static int failures = 0;

template <typename F> static void expect_code(int code, F &&action, const char *what) {
    try {
        action();
        std::cerr << what << ": no error, expected " << code << "\n";
        failures++;
    } catch (const clara::Error &error) {
        if (error.code() != code) {
            std::cerr << what << ": code " << error.code() << ", expected " << code << ": "
                      << error.what() << "\n";
            failures++;
        }
    }
}

int main(int argc, char **argv) try {
    if (argc != 4) return 2;
    clara::Context ctx = clara::Context::open(argv[1]);
    clara::Allocation in = ctx.get(argv[2], clara::read_only);
    double sum = 0;
    std::size_t count = 0;
    {
        clara::Mapping<float> view = in.map<float>();
        std::cout << "dims";
        for (auto d : view.dims()) std::cout << " " << d;
        for (float value : view) sum += value;
        count = view.size();
        // While we read: a writer elsewhere is busy (4), or times out (5) when it waits.
        clara::Allocation other = ctx.get(argv[2]);
        expect_code(CLARA_BUSY, [&] { other.map(clara::write); }, "write map while read");
        expect_code(CLARA_TIMEOUT, [&] { other.map(clara::write, 0.05); }, "timed write map");
    }
    expect_code(CLARA_PERMISSION, [&] { in.map(clara::write); }, "write map of read-only");
    expect_code(CLARA_NOT_FOUND, [&] { ctx.get("no-such-thing"); }, "get missing");
    expect_code(CLARA_INVALID, [&] { ctx.get("bad name"); }, "get bad name");
    expect_code(CLARA_INVALID, [&] { ctx.create<float>({1, 2, 3, 4, 5, 6, 7, 8, 9}); }, "9 dims");
    clara::Allocation out = ctx.create<double>({2});
    {
        clara::Mapping<double> view = out.map<double>(clara::write);
        view[0] = sum;
        view[1] = static_cast<double>(count);
    }
    out.publish(argv[3]);
    expect_code(CLARA_EXISTS, [&] {
        clara::Allocation again = ctx.create<double>({2});
        again.publish(argv[3]);
    }, "publish a taken name");
    // A write map left by an exception is incomplete for every reader.
    clara::Allocation torn = ctx.create<std::uint8_t>({4});
    torn.publish("torn");
    try {
        clara::Mapping<std::uint8_t> view = torn.map<std::uint8_t>(clara::write);
        view[0] = 1;
        throw std::runtime_error("failed mid-write");
    } catch (const std::runtime_error &) {
    }
    expect_code(CLARA_INCOMPLETE, [&] { ctx.get("torn").map(); }, "read torn data");
    torn.free();
    std::cout << (failures ? " failed" : " ok") << std::endl;
    return failures ? 1 : 0;
} catch (const clara::Error &error) {
    std::cerr << "wrapper: error " << error.code() << ": " << error.what() << std::endl;
    return error.code();
}
