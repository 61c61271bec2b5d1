// oneDNN 2-D convolution (NCHW, float32, one group) as three XLA FFI handlers: forward,
// input gradient and weight gradient. Built and loaded by singax/autograd/_onednn.py.
//
// Each handler takes two operands and writes one result; their shapes and the int64
// attributes (stride, padding top/bottom/left/right, dilation) fix a primitive, cached per
// thread so concurrent devices never share a scratch buffer. The primitive picks its own
// memory layouts; operands and result are reordered from/to the plain layouts when they differ.
#include <array>
#include <cstdint>
#include <exception>
#include <string>
#include <unordered_map>
#include <vector>

#include "oneapi/dnnl/dnnl.hpp"
#include "xla/ffi/api/ffi.h"

namespace ffi = xla::ffi;
using dnnl::memory;

namespace {

enum Kind : int64_t { kForward = 0, kInputGrad = 1, kWeightGrad = 2 };

using Key = std::array<int64_t, 20>;

struct KeyHash {
  size_t operator()(const Key& k) const {
    size_t h = 1469598103934665603ull;
    for (int64_t v : k) h = (h ^ static_cast<size_t>(v)) * 1099511628211ull;
    return h;
  }
};

// One operand or result of the primitive: its plain layout and, when the primitive wants
// another one, a buffer in that layout with the reorder between them.
struct Slot {
  int arg = 0;
  memory::desc plain, inner;
  bool reorder = false;
  memory inner_mem;
  dnnl::reorder convert;
};

struct Entry {
  dnnl::primitive prim;
  Slot in0, in1, out;
  memory scratch;
};

dnnl::engine& Engine() {
  static dnnl::engine engine(dnnl::engine::kind::cpu, 0);
  return engine;
}

Slot MakeSlot(int arg, const memory::dims& dims, memory::format_tag tag, const memory::desc& inner,
              bool is_output) {
  Slot s;
  s.arg = arg;
  s.plain = memory::desc(dims, memory::data_type::f32, tag);
  s.inner = inner;
  s.reorder = inner != s.plain;
  if (s.reorder) {
    s.inner_mem = memory(inner, Engine());
    s.convert = is_output ? dnnl::reorder(dnnl::reorder::primitive_desc(Engine(), inner, Engine(), s.plain))
                          : dnnl::reorder(dnnl::reorder::primitive_desc(Engine(), s.plain, Engine(), inner));
  }
  return s;
}

struct Geometry {
  memory::dims src, weights, dst, strides, dilates, pad_l, pad_r;
};

Entry Build(Kind kind, const Geometry& g) {
  using tag = memory::format_tag;
  const auto f32 = memory::data_type::f32;
  auto any = [&](const memory::dims& d) { return memory::desc(d, f32, tag::any); };
  dnnl::primitive_attr attr;
  attr.set_scratchpad_mode(dnnl::scratchpad_mode::user);
  dnnl::convolution_forward::primitive_desc fwd(
      Engine(), dnnl::prop_kind::forward_training, dnnl::algorithm::convolution_direct,
      any(g.src), any(g.weights), any(g.dst), g.strides, g.dilates, g.pad_l, g.pad_r,
      kind == kForward ? attr : dnnl::primitive_attr());
  Entry e;
  if (kind == kForward) {
    e.prim = dnnl::convolution_forward(fwd);
    e.in0 = MakeSlot(DNNL_ARG_SRC, g.src, tag::nchw, fwd.src_desc(), false);
    e.in1 = MakeSlot(DNNL_ARG_WEIGHTS, g.weights, tag::oihw, fwd.weights_desc(), false);
    e.out = MakeSlot(DNNL_ARG_DST, g.dst, tag::nchw, fwd.dst_desc(), true);
    e.scratch = memory(fwd.scratchpad_desc(), Engine());
  } else if (kind == kInputGrad) {
    dnnl::convolution_backward_data::primitive_desc pd(
        Engine(), dnnl::algorithm::convolution_direct, any(g.src), any(g.weights), any(g.dst),
        g.strides, g.dilates, g.pad_l, g.pad_r, fwd, attr);
    e.prim = dnnl::convolution_backward_data(pd);
    e.in0 = MakeSlot(DNNL_ARG_DIFF_DST, g.dst, tag::nchw, pd.diff_dst_desc(), false);
    e.in1 = MakeSlot(DNNL_ARG_WEIGHTS, g.weights, tag::oihw, pd.weights_desc(), false);
    e.out = MakeSlot(DNNL_ARG_DIFF_SRC, g.src, tag::nchw, pd.diff_src_desc(), true);
    e.scratch = memory(pd.scratchpad_desc(), Engine());
  } else {
    dnnl::convolution_backward_weights::primitive_desc pd(
        Engine(), dnnl::algorithm::convolution_direct, any(g.src), any(g.weights), any(g.dst),
        g.strides, g.dilates, g.pad_l, g.pad_r, fwd, attr);
    e.prim = dnnl::convolution_backward_weights(pd);
    e.in0 = MakeSlot(DNNL_ARG_SRC, g.src, tag::nchw, pd.src_desc(), false);
    e.in1 = MakeSlot(DNNL_ARG_DIFF_DST, g.dst, tag::nchw, pd.diff_dst_desc(), false);
    e.out = MakeSlot(DNNL_ARG_DIFF_WEIGHTS, g.weights, tag::oihw, pd.diff_weights_desc(), true);
    e.scratch = memory(pd.scratchpad_desc(), Engine());
  }
  return e;
}

memory Bind(dnnl::stream& stream, Slot& s, void* data, bool is_output) {
  memory user(s.plain, Engine(), data);
  if (!s.reorder) return user;
  if (!is_output) s.convert.execute(stream, user, s.inner_mem);
  return s.inner_mem;
}

ffi::Error Run(Kind kind, ffi::Buffer<ffi::F32> a, ffi::Buffer<ffi::F32> b, ffi::Result<ffi::Buffer<ffi::F32>> out,
               int64_t sh, int64_t sw, int64_t pt, int64_t pb, int64_t pl, int64_t pr, int64_t dh, int64_t dw) {
  // (a, b) -> out is (x, W) -> y, (dy, W) -> dx, (x, dy) -> dW
  auto dims = [](auto buf) {
    auto d = buf.dimensions();
    return memory::dims(d.begin(), d.end());
  };
  memory::dims da = dims(a), db = dims(b), dout = dims(*out);
  if (da.size() != 4 || db.size() != 4 || dout.size() != 4)
    return ffi::Error(ffi::ErrorCode::kInvalidArgument, "singax onednn conv: operands must be 4-D");
  Geometry g;
  g.src = kind == kInputGrad ? dout : da;
  g.weights = kind == kWeightGrad ? dout : db;
  g.dst = kind == kForward ? dout : (kind == kInputGrad ? da : db);
  g.strides = {sh, sw};
  g.dilates = {dh - 1, dw - 1};
  g.pad_l = {pt, pl};
  g.pad_r = {pb, pr};
  Key key{kind};
  for (int i = 0; i < 4; ++i) {
    key[1 + i] = g.src[i];
    key[5 + i] = g.weights[i];
    key[9 + i] = g.dst[i];
  }
  key[13] = sh; key[14] = sw; key[15] = pt; key[16] = pb; key[17] = pl; key[18] = pr;
  key[19] = dh * 1000003 + dw;
  try {
    thread_local std::unordered_map<Key, Entry, KeyHash> cache;
    thread_local dnnl::stream stream(Engine());
    auto it = cache.find(key);
    if (it == cache.end()) it = cache.emplace(key, Build(kind, g)).first;
    Entry& e = it->second;
    memory m0 = Bind(stream, e.in0, a.typed_data(), false);
    memory m1 = Bind(stream, e.in1, b.typed_data(), false);
    memory mo = Bind(stream, e.out, out->typed_data(), true);
    e.prim.execute(stream, {{e.in0.arg, m0}, {e.in1.arg, m1}, {e.out.arg, mo},
                            {DNNL_ARG_SCRATCHPAD, e.scratch}});
    if (e.out.reorder) {
      memory plain_out(e.out.plain, Engine(), out->typed_data());
      e.out.convert.execute(stream, e.out.inner_mem, plain_out);
    }
    stream.wait();
  } catch (const std::exception& err) {
    return ffi::Error(ffi::ErrorCode::kInternal, std::string("singax onednn conv: ") + err.what());
  }
  return ffi::Error::Success();
}

template <Kind kind>
ffi::Error Handler(ffi::Buffer<ffi::F32> a, ffi::Buffer<ffi::F32> b, ffi::Result<ffi::Buffer<ffi::F32>> out,
                   int64_t sh, int64_t sw, int64_t pt, int64_t pb, int64_t pl, int64_t pr, int64_t dh, int64_t dw) {
  return Run(kind, a, b, out, sh, sw, pt, pb, pl, pr, dh, dw);
}

}  // namespace

#define SINGAX_CONV_BINDING                                                                      \
  ffi::Ffi::Bind()                                                                               \
      .Arg<ffi::Buffer<ffi::F32>>()                                                              \
      .Arg<ffi::Buffer<ffi::F32>>()                                                              \
      .Ret<ffi::Buffer<ffi::F32>>()                                                              \
      .Attr<int64_t>("stride_h").Attr<int64_t>("stride_w")                                       \
      .Attr<int64_t>("pad_top").Attr<int64_t>("pad_bottom")                                      \
      .Attr<int64_t>("pad_left").Attr<int64_t>("pad_right")                                     \
      .Attr<int64_t>("dilation_h").Attr<int64_t>("dilation_w")

XLA_FFI_DEFINE_HANDLER_SYMBOL(SingaxConvForward, Handler<kForward>, SINGAX_CONV_BINDING);
XLA_FFI_DEFINE_HANDLER_SYMBOL(SingaxConvInputGrad, Handler<kInputGrad>, SINGAX_CONV_BINDING);
XLA_FFI_DEFINE_HANDLER_SYMBOL(SingaxConvWeightGrad, Handler<kWeightGrad>, SINGAX_CONV_BINDING);
