-- test_backend_ops.lua: every case of op_cases.lua on every device present (cpu:1 always, cuda:0
-- when there is one) against the CPU reference (cpu:0): values, output device and gradients,
-- with per-dtype tolerances. One row per case, dtype and device: "ok" with the max error, the
-- error that failed, or "not supported" where the device's backend lacks the entry.
-- MOONSEG_BACKEND_OPS_DEVICES=cuda:0,cpu:1 chooses the devices (the GPU test run sets cuda:0);
-- MOONSEG_BACKEND_OPS_FILTER=conv runs the cases whose name contains that text.
local ms = require "moonseg"
local H = require "harness"
local cases = require "op_cases"

local REF = "cpu"
local devices = {}
local env = os.getenv("MOONSEG_BACKEND_OPS_DEVICES")
if env and env ~= "" then
  for d in env:gmatch("[^,%s]+") do devices[#devices + 1] = ms.Tensor.canonical_device(d) end
else
  devices[1] = "cpu:1"
  if ms.cuda.is_available() then devices[#devices + 1] = "cuda:0" end
end
local filter = os.getenv("MOONSEG_BACKEND_OPS_FILTER")
for _, d in ipairs(devices) do
  if d:match("^cuda") and not ms.cuda.is_available() then
    print("skipped: no CUDA device for " .. d .. " (" .. (ms.has_cuda() and "moonseg has the CUDA backend, " ..
      ms.cuda.device_count() .. " devices visible" or "moonseg was built without CUDA") .. ")")
    os.exit(0)
  end
end

-- max |device - reference| / (1 + |reference|) allowed, per dtype (times a case's tol factor)
local TOL = { f64 = 1e-12, f32 = 1e-5, f16 = 2e-3, bf16 = 1.6e-2, i64 = 0, i32 = 0, u8 = 0, bool = 0 }

-- The C side's one message for a missing backend entry (op, device, dtype), and this build's
-- older wording for device-less paths.
local function unsupported(msg)
  msg = tostring(msg)
  return msg:find("not supported", 1, true) or msg:find("not available on this device", 1, true)
end

-- Deterministic values: an LCG seeded per case, input and dtype (both sides get the same).
local function values(seed, n, lo, hi, round)
  local rnd = H.rng(seed, lo or -2, hi or 2)
  local v = {}
  for i = 1, n do
    local r = rnd()
    if round then r = math.floor(r + 0.5) end
    v[i] = r
  end
  return v
end

local function numel(shape)
  local n = 1
  for _, d in ipairs(shape) do n = n * d end
  return n
end

-- The contiguous base of an input (its layout before the strided view), on the reference.
local function base_of(spec, dtype, seed)
  local shape = {}
  for i, d in ipairs(spec.shape) do shape[i] = d end
  if spec.t then shape[spec.t[1]], shape[spec.t[2]] = shape[spec.t[2]], shape[spec.t[1]] end
  if spec.step then shape[#shape] = shape[#shape] * spec.step end
  local n = numel(shape)
  local kind = spec.kind or "float"
  local t
  if kind == "label" then
    local v = values(seed, n, 0, spec.classes)
    for i = 1, n do
      v[i] = math.floor(v[i])
      if spec.ignore and i % 5 == 0 then v[i] = spec.ignore end
    end
    t = ms.tensor(v, { dtype = "i64", device = REF })
  elseif kind == "bool" then
    local v = values(seed, n)
    for i = 1, n do v[i] = v[i] > 0 end
    t = ms.tensor(v, { dtype = "bool", device = REF })
  else
    t = ms.tensor(values(seed, n, spec.lo, spec.hi, spec.round), { dtype = "f64", device = REF }):to(dtype)
  end
  return t:reshape(shape)
end

-- The view the op sees (transposed or strided as the spec says), requiring grad when asked.
local function view_of(spec, base, grad)
  local v = base
  if spec.t then v = v:transpose(spec.t[1], spec.t[2]) end
  if spec.step then
    local last = #spec.shape
    v = v:slice(last, 1, base:size(last), spec.step)
  end
  if grad then
    if v == base then v = base:detach() end
    v:requires_grad_(true)
  end
  return v
end

local function outputs(r)
  local list = {}
  for _, o in ipairs(r) do
    if ms.is_tensor(o) then list[#list + 1] = o
    elseif type(o) == "table" then for _, t in ipairs(o) do list[#list + 1] = t end end
  end
  return list
end

-- Max relative error of d against r; errors when shapes or dtypes differ.
local function max_err(d, r, what)
  H.eq(d:type(), r:type(), what .. ": dtype")
  H.same_list(d:size(), r:size(), what .. ": shape")
  local db, n = d:to_f64_buffer()
  local rb = r:to_f64_buffer()
  local e = 0
  for i = 0, n - 1 do
    local a, b = db[i], rb[i]
    if b ~= b then
      if a == a then return math.huge end
    elseif b == math.huge or b == -math.huge then
      if a ~= b then return math.huge end
    else
      local x = math.abs(a - b) / (1 + math.abs(b))
      if not (x <= e) then e = x end -- NaN on the device counts as infinite error
      if a ~= a then return math.huge end
    end
  end
  return e
end

-- Runs case c in dtype on device (inputs made from the same bases); returns outputs, grads.
local function run(c, dtype, bases, device)
  local inputs = {}
  for i, spec in ipairs(c.inputs) do
    -- a fresh copy for each run: in-place ops (running stats) must not see the other run's writes
    local b = device ~= REF and bases[i]:to(device) or bases[i]:clone()
    local want = c.grad and spec.grad and (spec.kind or "float") == "float"
    inputs[i] = view_of(spec, b, want)
  end
  local outs = outputs { c.fn(ms, unpack(inputs, 1, #c.inputs)) }
  local grads = {}
  if c.grad then
    local loss
    for k, o in ipairs(outs) do
      if o:is_floating_point() and o.requires_grad then
        -- a fixed weighting of every output element, so each gets its own gradient
        local w = ms.tensor(values(1000 + k, o:numel()), { dtype = "f64", device = device }):reshape(o:size())
        local term = (o:to("f64") * w):sum()
        loss = loss and loss + term or term
      end
    end
    if loss then
      loss:backward()
      for i, spec in ipairs(c.inputs) do
        if inputs[i].requires_grad then grads[#grads + 1] = { i, inputs[i].grad } end
      end
    end
  end
  local after = {}
  for _, i in ipairs(c.inplace or {}) do after[#after + 1] = { i, inputs[i] } end
  return outs, grads, after
end

local rows, failures, unsupported_rows = 0, 0, 0
local function row(name, dtype, device, status)
  rows = rows + 1
  print(string.format("  %-32s %-5s %-7s %s", name, dtype, device, status))
end

print(string.format("backend ops: %d cases on %s against %s", #cases, table.concat(devices, ", "), REF))
for ci, c in ipairs(cases) do
  if not filter or c.name:find(filter, 1, true) then
    for _, dtype in ipairs(c.dtypes) do
      local bases = {}
      for i, spec in ipairs(c.inputs) do bases[i] = base_of(spec, dtype, ci * 97 + i * 13 + #dtype) end
      local okr, ro, rg, ra = pcall(run, c, dtype, bases, REF)
      for _, device in ipairs(devices) do
        if not okr then
          -- the reference backend lacks this dtype: nothing to compare against
          if not unsupported(ro) then
            failures = failures + 1
            row(c.name, dtype, device, "FAIL reference: " .. tostring(ro):gsub("\n.*", ""))
          else
            row(c.name, dtype, device, "no reference (" .. tostring(ro):gsub("\n.*", "") .. ")")
          end
        else
          local tol = (TOL[dtype] or 0) * (c.tol or 1)
          local ok, err = pcall(function()
            local d_o, d_g, d_a = run(c, dtype, bases, device)
            H.eq(#d_o, #ro, "number of outputs")
            local e = 0
            for k = 1, #ro do
              H.eq(d_o[k].device, device, "output " .. k .. " device")
              local x = max_err(d_o[k], ro[k], "output " .. k)
              local t = ro[k]:is_floating_point() and tol or 0
              if x > t then error(string.format("output %d: max error %.3g > tol %.3g", k, x, t), 0) end
              e = math.max(e, x)
            end
            H.eq(#d_g, #rg, "number of gradients")
            for k = 1, #rg do
              H.eq(d_g[k][2] ~= nil, rg[k][2] ~= nil, "gradient of input " .. rg[k][1] .. " present")
              if rg[k][2] then
                H.eq(d_g[k][2].device, device, "gradient " .. rg[k][1] .. " device")
                local x = max_err(d_g[k][2], rg[k][2], "gradient of input " .. rg[k][1])
                if x > 4 * tol then
                  error(string.format("gradient of input %d: max error %.3g > tol %.3g", rg[k][1], x, 4 * tol), 0)
                end
                e = math.max(e, x)
              end
            end
            for k = 1, #ra do
              local x = max_err(d_a[k][2], ra[k][2], "in-place input " .. ra[k][1])
              if x > tol then error(string.format("in-place input %d: max error %.3g", ra[k][1], x), 0) end
              e = math.max(e, x)
            end
            return e
          end)
          if ok then
            row(c.name, dtype, device, string.format("ok  (max err %.2g)", err))
          elseif unsupported(err) and not device:match("^cpu") then
            -- a GPU backend without this entry yet; on cpu:N the CPU kernels must serve every case
            unsupported_rows = unsupported_rows + 1
            row(c.name, dtype, device, "not supported (" .. tostring(err):gsub("\n.*", "") .. ")")
          else
            failures = failures + 1
            row(c.name, dtype, device, "FAIL " .. tostring(err):gsub("\n.*", ""))
          end
        end
      end
    end
  end
end
print(string.format("backend ops: %d rows, %d failed, %d not supported", rows, failures, unsupported_rows))

H.case("every case matches the CPU reference on every device", function()
  if failures > 0 then error(failures .. " case(s) failed; see the FAIL rows above") end
  if rows == 0 then error("no case ran (filter '" .. tostring(filter) .. "')") end
end)
H.done()
