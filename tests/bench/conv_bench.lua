-- conv_bench.lua: moonseg conv2d timings (forward, backward-data, backward-weights, both) for the
-- shapes in conv_shapes.txt; prints medians and GFLOP/s, plus RESULT lines for run_conv_bench.sh.
--   luajit tests/bench/conv_bench.lua [--threads 2] [--reps 5] [--filter SUBSTR] [--dtype f32]
--                                     [--stat median|min]
local ffi = require "ffi"
local ms = require "moonseg"
local L = ms.lib
local C, ctx, out = L.C, L.ctx, L.out

local now = ms.time -- monotonic wall-clock seconds

local opts = { threads = 2, reps = 5, filter = "", dtype = "f32", stat = "median" }
do
  local i = 1
  while i <= #arg do
    local k = arg[i]:match("^%-%-(.+)$")
    if not k or opts[k] == nil then error("unknown argument " .. arg[i]) end
    opts[k] = type(opts[k]) == "number" and tonumber(arg[i + 1]) or arg[i + 1]
    i = i + 2
  end
end
ms.set_num_threads(opts.threads)
local here = (arg[0]:match("^(.*)/[^/]*$") or ".")
local shapes_file = here .. "/conv_shapes.txt"

local function median_ms(fn, reps)
  fn() -- warm-up: primitive and workspace creation
  local t = {}
  for i = 1, reps do
    local t0 = now()
    fn()
    t[i] = (now() - t0) * 1e3
  end
  table.sort(t)
  if opts.stat == "min" then return t[1] end
  return t[math.floor((reps + 1) / 2)]
end

local function filled(shape, dtype)
  local t = ms.empty(shape, { dtype = dtype })
  -- Deterministic non-trivial values without the random family: fill then scale by arange.
  local n = t:numel()
  local p = ffi.cast(dtype == "f64" and "double*" or "float*", t:data_ptr())
  local s = 1
  for i = 0, n - 1 do
    s = (s * 1103515245 + 12345) % 2147483648
    p[i] = s / 2147483648 - 0.5
  end
  return t
end

print(string.format("moonseg conv2d, %s, %d threads, %s of %d (ms; GFLOP/s in brackets)",
  opts.dtype, opts.threads, opts.stat, opts.reps))
print(string.format("%-20s %16s %16s %16s %16s", "shape", "forward", "bwd_data", "bwd_weight", "bwd_both"))
for line in io.lines(shapes_file) do
  line = line:gsub("#.*", "")
  local f = {}
  for w in line:gmatch("%S+") do f[#f + 1] = w end
  if #f > 0 and f[1]:find(opts.filter, 1, true) then
    local name = f[1]
    local n, c, h, w, o, k, s, g = tonumber(f[2]), tonumber(f[3]), tonumber(f[4]), tonumber(f[5]),
      tonumber(f[6]), tonumber(f[7]), tonumber(f[8]), tonumber(f[9])
    local x = filled({ n, c, h, w }, opts.dtype)
    local wt = filled({ o, c / g, k, k }, opts.dtype)
    local p = ffi.new("ms_conv2d_params")
    p.stride[0], p.stride[1] = s, s
    p.padding[0], p.padding[1] = math.floor(k / 2), math.floor(k / 2)
    p.dilation[0], p.dilation[1] = 1, 1
    p.groups = g
    local xh, wh = x._h, wt._h
    L.check(C.ms_conv2d(ctx, xh, wh, nil, p, out))
    local y = ms.Tensor.wrap(out[0])
    local gy = filled(y:size(), opts.dtype)
    local gh = gy._h
    local oh, ow = y:size(3), y:size(4)
    local gflop = 2 * n * o * oh * ow * (c / g) * k * k / 1e9
    local function fwd()
      L.check(C.ms_conv2d(ctx, xh, wh, nil, p, out))
      C.ms_tensor_free(out[0])
    end
    local function bwd(want_x, want_w)
      return function()
        out[0], out[1] = nil, nil
        L.check(C.ms_conv2d_backward(ctx, gh, xh, wh, p, want_x and out or nil,
          want_w and out + 1 or nil, nil))
        if want_x then C.ms_tensor_free(out[0]) end
        if want_w then C.ms_tensor_free(out[1]) end
      end
    end
    local tf = median_ms(fwd, opts.reps)
    local td = median_ms(bwd(true, false), opts.reps)
    local tw = median_ms(bwd(false, true), opts.reps)
    local tb = median_ms(bwd(true, true), opts.reps)
    local function cell(t, fl) return string.format("%8.2f [%5.0f]", t, fl / (t / 1e3)) end
    print(string.format("%-20s %s %s %s %s", name, cell(tf, gflop), cell(td, gflop), cell(tw, gflop),
      cell(tb, 2 * gflop)))
    print(string.format("RESULT %s %.3f %.3f %.3f %.3f %.4f", name, tf, td, tw, tb, gflop))
    io.stdout:flush()
    x:free(); wt:free(); y:free(); gy:free()
  end
end
