-- test_copy_layouts.lua: copies between layouts (transposes and permutes made contiguous, copies
-- into transposed views) in every dtype, against values placed by index arithmetic in Lua. The
-- tiled path (csrc/cpu/copy_tiled.c) and its in-register 8x8 / 16x16 blocks take sizes that are
-- and are not multiples of the blocks, so edges, full blocks and the element loop all run.
local H = require "harness"
local ms = require "moonseg"

-- Values exact in every dtype (small integers; bool takes 0/1).
local function source(shape, dtype)
  local n = 1
  for _, s in ipairs(shape) do n = n * s end
  local mod = dtype == "bool" and 2 or (dtype == "u8" and 251 or 241)
  local v = {}
  for k = 1, n do v[k] = (k * 7) % mod end
  return ms.tensor(v, { dtype = dtype }):reshape(shape)
end

-- Row-major flat index of a (1-based) multi-index.
local function flat_index(idx, shape)
  local k = 0
  for d = 1, #shape do k = k * shape[d] + (idx[d] - 1) end
  return k + 1
end

-- The expected flat values of x:permute(perm) made contiguous, from x's flat values.
local function permuted(xv, shape, perm)
  local out_shape = {}
  for d = 1, #perm do out_shape[d] = shape[perm[d]] end
  local n, res, idx = #xv, {}, {}
  for d = 1, #out_shape do idx[d] = 1 end
  for k = 1, n do
    local src = {}
    for d = 1, #perm do src[perm[d]] = idx[d] end
    res[k] = xv[flat_index(src, shape)]
    for d = #out_shape, 1, -1 do -- next output index, last dim fastest
      idx[d] = idx[d] + 1
      if idx[d] <= out_shape[d] then break end
      idx[d] = 1
    end
  end
  return res, out_shape
end

local function values(t) return t:reshape(-1):to("f64"):tolist() end

local cases = {
  { { 37, 45 }, { 2, 1 } },          -- edges in both dims, no full 32 x 32 tile in one
  { { 64, 48 }, { 2, 1 } },          -- full tiles and blocks only
  { { 3, 19, 130 }, { 1, 3, 2 } },   -- batched transpose ([B, C, N] -> [B, N, C])
  { { 2, 130, 19 }, { 1, 3, 2 } },
  { { 2, 33, 5, 40 }, { 1, 3, 4, 2 } }, -- head split: [B, N, h, d] -> [B, h, d, N]
  { { 2, 17, 3, 24 }, { 1, 3, 2, 4 } }, -- innermost dim kept: the element-wise path
  { { 20, 1, 33 }, { 3, 2, 1 } },    -- a size-1 dim between
}

H.case("permute(...):contiguous() in every dtype equals the index arithmetic", function()
  for _, dtype in ipairs { "f32", "f64", "f16", "bf16", "i64", "i32", "u8", "bool" } do
    for _, c in ipairs(cases) do
      local shape, perm = c[1], c[2]
      local x = source(shape, dtype)
      local want, out_shape = permuted(values(x), shape, perm)
      local y = x:permute(unpack(perm)):contiguous()
      H.same_list(y:size(), out_shape)
      H.eq(y:type(), dtype)
      local got = values(y)
      for k = 1, #want do
        if got[k] ~= want[k] then
          error(string.format("%s %s perm %s: element %d is %s, want %s", dtype, table.concat(shape, "x"),
            table.concat(perm, ","), k, tostring(got[k]), tostring(want[k])))
        end
      end
    end
  end
end)

H.case("copy into a transposed view, from an expanded source, and with 2 threads", function()
  -- dst a transposed view (its last dim not unit-stride): the generic loop, same values
  local a = source({ 40, 36 }, "f32")
  local d = ms.zeros(36, 40)
  d:t():copy_(a)
  H.same_list(values(d), (permuted(values(a), { 40, 36 }, { 2, 1 })))
  -- an expanded source (stride 0 along the destination's last dim)
  local col = source({ 50, 1 }, "f32")
  local e = col:expand(50, 70):t():contiguous()
  local ev, cv = values(e), values(col)
  for j = 1, 70 do for i = 1, 50 do H.eq(ev[(j - 1) * 50 + i], cv[i]) end end
  -- threaded: the same bits as one thread
  local big = ms.randn(4, 300, 257)
  local prev = ms.get_num_threads()
  ms.set_num_threads(1)
  local one = big:permute(1, 3, 2):contiguous()
  ms.set_num_threads(2)
  local two = big:permute(1, 3, 2):contiguous()
  ms.set_num_threads(prev)
  H.eq((one - two):abs():max():item(), 0)
  H.same_list(values(two:narrow(1, 3, 1)), (permuted(values(big:narrow(1, 3, 1)), { 1, 300, 257 }, { 1, 3, 2 })))
end)

H.case("unary ops and their backward on transposed inputs (staged through the tiled copy) equal the contiguous result", function()
  local base = ms.randn(3, 70, 90) * 2
  for _, dtype in ipairs { "f32", "bf16", "f64" } do
    local b = base:to(dtype)
    local xt = b:transpose(2, 3) -- [3, 90, 70], unit stride along dim 2
    local xc = xt:contiguous()
    H.eq(xt:is_contiguous(), false)
    for _, name in ipairs { "gelu", "exp", "tanh", "relu", "sigmoid" } do
      local a, c = xt[name](xt), xc[name](xc)
      H.eq(a:to("f64"):sub(c:to("f64")):abs():max():item(), 0, dtype .. " " .. name)
    end
    -- backward: the saved input is the transposed view
    local g = ms.randn(3, 90, 70):to(dtype)
    local l1 = b:clone():requires_grad_()
    l1:transpose(2, 3):gelu():backward(g)
    local l2 = xc:clone():requires_grad_()
    l2:gelu():backward(g)
    H.eq(l1.grad:transpose(2, 3):to("f64"):sub(l2.grad:to("f64")):abs():max():item(), 0, dtype .. " gelu backward")
  end
end)

H.case("binary ops with a transposed operand equal the contiguous result; broadcast operands stay as they are", function()
  local base, other = ms.randn(3, 70, 90), ms.randn(3, 90, 70) + 3
  local bias = ms.randn(70) -- broadcast along the last dim: not staged, the same values
  for _, dtype in ipairs { "f32", "bf16", "f64" } do
    local xt = base:to(dtype):transpose(2, 3) -- [3, 90, 70]
    local xc, y = xt:contiguous(), other:to(dtype)
    for _, op in ipairs { "add", "sub", "mul", "div" } do
      local got, want = xt[op](xt, y), xc[op](xc, y)
      H.eq(got:to("f64"):sub(want:to("f64")):abs():max():item(), 0, dtype .. " " .. op .. " (a transposed)")
      got, want = y[op](y, xt), y[op](y, xc)
      H.eq(got:to("f64"):sub(want:to("f64")):abs():max():item(), 0, dtype .. " " .. op .. " (b transposed)")
    end
    local bb = bias:to(dtype)
    H.eq((xt + bb):to("f64"):sub((xc + bb):to("f64")):abs():max():item(), 0, dtype .. " with a broadcast bias")
    H.eq((xt * xt):to("f64"):sub((xc * xc):to("f64")):abs():max():item(), 0, dtype .. " x * x")
  end
end)

H.done()
