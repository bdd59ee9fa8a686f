// clara_fastio.hpp - C++17 header-only RAII wrapper of clara_fastio.h.
//
//     clara::Context ctx = clara::Context::open("job");
//     clara::Allocation vol = ctx.create<float>({64, 256, 256});
//     {
//         clara::Mapping<float> map = vol.map<float>(clara::write);  // exclusive
//         std::fill(map.begin(), map.end(), 1.0f);
//     }                                  // unmapped: complete (incomplete if unwinding)
//     vol.publish("volume");
//     clara::Allocation in = ctx.get("volume", clara::read_only);
//     float first = in.map<float>()[0];  // a read map, ended at the end of the statement
//
// Every failure throws clara::Error, carrying the C code (`code()`, the CLI's exit code)
// and the message. Objects release what they hold when destroyed: a Mapping unmaps (a
// write map is marked complete, or incomplete when destroyed during stack unwinding by an
// exception), an Allocation releases its reference, a Context closes. A Context must
// outlive the Allocations made from it. Link with -lclara_fastio.
#ifndef CLARA_FASTIO_HPP
#define CLARA_FASTIO_HPP

#include <cstddef>
#include <cstdint>
#include <exception>
#include <initializer_list>
#include <stdexcept>
#include <string>
#include <type_traits>
#include <utility>
#include <vector>

#include "clara_fastio.h"

namespace clara {

/// A failed call: `code()` is the C return code (the `clara` CLI's exit code).
class Error : public std::runtime_error {
  public:
    Error(int code, const std::string &message) : std::runtime_error(message), code_(code) {}
    int code() const noexcept { return code_; }

  private:
    int code_;
};

namespace detail {
inline void check(int code) {
    if (code != CLARA_OK) throw Error(code, clara_last_error());
}
}  // namespace detail

/// The element type code of a C++ type (for typed maps and creates).
template <typename T> constexpr clara_element_type element_type_of() {
    if constexpr (std::is_same_v<T, bool>) return CLARA_BOOL;
    else if constexpr (std::is_same_v<T, std::uint8_t>) return CLARA_UINT8;
    else if constexpr (std::is_same_v<T, std::uint16_t>) return CLARA_UINT16;
    else if constexpr (std::is_same_v<T, std::uint32_t>) return CLARA_UINT32;
    else if constexpr (std::is_same_v<T, std::uint64_t>) return CLARA_UINT64;
    else if constexpr (std::is_same_v<T, std::int8_t>) return CLARA_INT8;
    else if constexpr (std::is_same_v<T, std::int16_t>) return CLARA_INT16;
    else if constexpr (std::is_same_v<T, std::int32_t>) return CLARA_INT32;
    else if constexpr (std::is_same_v<T, std::int64_t>) return CLARA_INT64;
    else if constexpr (std::is_same_v<T, float>) return CLARA_FLOAT32;
    else if constexpr (std::is_same_v<T, double>) return CLARA_FLOAT64;
    else static_assert(sizeof(T) == 0, "no clara element type for this C++ type");
}

enum MapMode { read = CLARA_READ, write = CLARA_WRITE };
enum GetMode { read_write = 0, read_only = CLARA_READ_ONLY };
constexpr double forever = CLARA_FOREVER;

using Dims = std::vector<std::int64_t>;

class Allocation;

/// A typed view of a mapped allocation; unmaps when destroyed.
template <typename T> class Mapping {
  public:
    Mapping(Mapping &&other) noexcept
        : alloc_(std::exchange(other.alloc_, nullptr)), data_(other.data_), size_(other.size_),
          dims_(std::move(other.dims_)) {}
    Mapping &operator=(Mapping &&other) noexcept {
        if (this != &other) {
            finish(std::uncaught_exceptions() == 0);
            alloc_ = std::exchange(other.alloc_, nullptr);
            data_ = other.data_;
            size_ = other.size_;
            dims_ = std::move(other.dims_);
        }
        return *this;
    }
    Mapping(const Mapping &) = delete;
    Mapping &operator=(const Mapping &) = delete;
    ~Mapping() { finish(std::uncaught_exceptions() == entry_exceptions_); }

    T *data() const noexcept { return data_; }
    std::size_t size() const noexcept { return size_; }  ///< number of elements
    const Dims &dims() const noexcept { return dims_; }
    T *begin() const noexcept { return data_; }
    T *end() const noexcept { return data_ + size_; }
    T &operator[](std::size_t i) const noexcept { return data_[i]; }

    /// End the map now: a write map is marked complete, or incomplete if `complete` is false.
    void unmap(bool complete = true) {
        clara_allocation *alloc = std::exchange(alloc_, nullptr);
        if (alloc != nullptr) detail::check(clara_unmap(alloc, complete));
    }

  private:
    friend class Allocation;
    Mapping(clara_allocation *alloc, void *data)
        : alloc_(alloc), data_(static_cast<T *>(data)), entry_exceptions_(std::uncaught_exceptions()) {
        std::int64_t dims[CLARA_MAX_DIMS];
        int ndims = clara_dims(alloc, dims);
        dims_.assign(dims, dims + ndims);
        size_ = clara_nbytes(alloc) / sizeof(T);
    }
    void finish(bool complete) noexcept {
        clara_allocation *alloc = std::exchange(alloc_, nullptr);
        if (alloc != nullptr) clara_unmap(alloc, complete);
    }

    clara_allocation *alloc_;
    T *data_;
    std::size_t size_ = 0;
    Dims dims_;
    int entry_exceptions_ = 0;
};

/// One reference to an allocation; released when destroyed.
class Allocation {
  public:
    explicit Allocation(clara_allocation *alloc = nullptr) noexcept : alloc_(alloc) {}
    Allocation(Allocation &&other) noexcept : alloc_(std::exchange(other.alloc_, nullptr)) {}
    Allocation &operator=(Allocation &&other) noexcept {
        if (this != &other) {
            clara_release(alloc_);
            alloc_ = std::exchange(other.alloc_, nullptr);
        }
        return *this;
    }
    Allocation(const Allocation &) = delete;
    Allocation &operator=(const Allocation &) = delete;
    ~Allocation() { clara_release(alloc_); }

    /// Map for reading or writing, typed as T (its size must divide the data); `timeout`
    /// seconds to wait for a conflicting holder (0: throw busy at once; clara::forever).
    template <typename T = std::uint8_t>
    Mapping<T> map(MapMode mode = read, double timeout = 0, bool allow_incomplete = false) {
        if (clara_nbytes(get()) % sizeof(T) != 0)
            throw Error(CLARA_INVALID, "the data is not a whole number of that C++ type");
        void *data = nullptr;
        int flags = mode | (allow_incomplete ? CLARA_ALLOW_INCOMPLETE : 0);
        detail::check(clara_map(alloc_, flags, timeout, &data));
        return Mapping<T>(alloc_, data);
    }
    void publish(const std::string &name) { detail::check(clara_publish(get(), name.c_str())); }
    void set_type_and_dimensions(clara_element_type type, const Dims &dims) {
        detail::check(clara_set_type_and_dimensions(get(), type, static_cast<int>(dims.size()),
                                                    dims.data()));
    }
    /// Forbid new gets job-wide and drop this reference.
    void free() { detail::check(clara_free(std::exchange(alloc_, nullptr))); }
    void release() { detail::check(clara_release(std::exchange(alloc_, nullptr))); }

    clara_element_type element_type() const { return clara_type(get()); }
    Dims dims() const {
        std::int64_t dims[CLARA_MAX_DIMS];
        int ndims = clara_dims(get(), dims);
        return Dims(dims, dims + ndims);
    }
    std::uint64_t nbytes() const { return clara_nbytes(get()); }
    std::uint64_t capacity() const { return clara_capacity(get()); }
    std::string name() const {
        const char *name = clara_name(get());
        return name ? name : "";
    }
    bool read_only() const { return clara_is_read_only(get()); }
    clara_allocation *handle() const noexcept { return alloc_; }

  private:
    clara_allocation *get() const {
        if (alloc_ == nullptr) throw Error(CLARA_INVALID, "this allocation was released");
        return alloc_;
    }
    clara_allocation *alloc_;
};

/// An open context; closed when destroyed. Allocations made from it must die first.
class Context {
  public:
    static Context open(const std::string &name) {
        clara_context *ctx = nullptr;
        detail::check(clara_context_open(name.c_str(), &ctx));
        return Context(ctx);
    }
    static Context create(const std::string &name, std::uint64_t capacity = 0,
                          unsigned mode = 0600, int owner_pid = 0) {
        clara_context *ctx = nullptr;
        detail::check(clara_context_create(name.c_str(), capacity, mode, owner_pid, &ctx));
        return Context(ctx);
    }
    static void destroy(const std::string &name) {
        detail::check(clara_context_destroy(name.c_str()));
    }
    /// The job's context, inside an operator of `clara run`.
    static Context of_operator() {
        clara_context *ctx = nullptr;
        detail::check(clara_operator_context(&ctx));
        return Context(ctx);
    }

    Context(Context &&other) noexcept : ctx_(std::exchange(other.ctx_, nullptr)) {}
    Context &operator=(Context &&other) noexcept {
        if (this != &other) {
            clara_context_close(ctx_);
            ctx_ = std::exchange(other.ctx_, nullptr);
        }
        return *this;
    }
    Context(const Context &) = delete;
    Context &operator=(const Context &) = delete;
    ~Context() { clara_context_close(ctx_); }

    Allocation create(clara_element_type type, const Dims &dims) {
        clara_allocation *alloc = nullptr;
        detail::check(clara_create(ctx_, type, static_cast<int>(dims.size()), dims.data(), &alloc));
        return Allocation(alloc);
    }
    template <typename T> Allocation create(const Dims &dims) {
        return create(element_type_of<T>(), dims);
    }
    Allocation get(const std::string &name, GetMode mode = read_write) {
        clara_allocation *alloc = nullptr;
        detail::check(clara_get(ctx_, name.c_str(), mode, &alloc));
        return Allocation(alloc);
    }
    /// Inside `clara run`: the declared input (read-only) or output `name`.
    Allocation variable(const std::string &name) {
        clara_allocation *alloc = nullptr;
        detail::check(clara_operator_get(ctx_, name.c_str(), &alloc));
        return Allocation(alloc);
    }
    /// Inside `clara run`: allocate the dynamic output `name` with its full dimensions.
    Allocation allocate(const std::string &name, const Dims &dims) {
        clara_allocation *alloc = nullptr;
        detail::check(clara_operator_allocate(ctx_, name.c_str(), static_cast<int>(dims.size()),
                                              dims.data(), &alloc));
        return Allocation(alloc);
    }
    std::string name() const { return clara_context_name(ctx_); }
    clara_context *handle() const noexcept { return ctx_; }

  private:
    explicit Context(clara_context *ctx) noexcept : ctx_(ctx) {}
    clara_context *ctx_;
};

}  // namespace clara

#endif  // CLARA_FASTIO_HPP
