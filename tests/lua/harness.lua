-- harness.lua: tiny assertion helpers for the Lua tests (each test file is one ctest test).
local H = { passed = 0, failed = 0 }

local function fmt(v)
  if type(v) == "table" then
    local parts = {}
    for i = 1, #v do parts[i] = fmt(v[i]) end
    return "{" .. table.concat(parts, ", ") .. "}"
  end
  return tostring(v)
end

-- Runs fn as a named case; a failure is reported and counted, the file goes on. Each case runs
-- in a coroutine of its own: a fresh Lua stack, so no stack slot still holds an earlier case's
-- values (they stay alive until overwritten, and would skew memory measurements).
function H.case(name, fn)
  local ok, err = coroutine.wrap(function() return xpcall(fn, debug.traceback) end)()
  if ok then
    H.passed = H.passed + 1
  else
    H.failed = H.failed + 1
    io.stderr:write("FAIL ", name, "\n", tostring(err), "\n")
  end
end

-- Collects until a full collection frees no more tensor memory: garbage reachable only from
-- a finalizer goes in a later cycle, and a memory-pressure collection (tensor.lua) could
-- otherwise free it in the middle of a measurement.
function H.settle_memory()
  local ms = require "moonseg"
  -- two quiet cycles in a row: a cycle that frees only Lua objects (a finalized wrapper, a
  -- closure) can make the tensors they referenced collectable in the next one
  local quiet = 0
  repeat
    local a = ms.memory_stats().allocated
    collectgarbage()
    quiet = ms.memory_stats().allocated >= a and quiet + 1 or 0
  until quiet >= 2
end

-- held_by(fn) -> bytes, fn's results: the bytes of storages made inside fn that are still alive
-- once garbage is collected. Allocated-minus-baseline would count garbage from earlier cases
-- that a stale Lua stack slot kept alive at the baseline and the collector freed later (CI saw
-- "held -20 MB").
function H.held_by(fn)
  local ms = require "moonseg"
  local Tensor = require "moonseg.tensor"
  local C = require("moonseg.lib").C
  local made = setmetatable({}, { __mode = "k" })
  -- writes go to the weak set, so tracking itself keeps nothing alive
  local sink = setmetatable({}, { __newindex = function(_, _, t) made[t] = true end })
  local first = C.ms_tensor_storage_serial(Tensor.handle(ms.empty(1))) + 1
  local prev = Tensor.track(sink)
  local r = { pcall(fn) }
  Tensor.track(prev)
  if not r[1] then error(r[2], 0) end
  H.settle_memory()
  local seen, bytes = {}, 0
  for t in pairs(made) do
    -- views of older storages (saved weights, reshaped inputs) are not what fn holds
    local serial = not t:is_freed() and C.ms_tensor_storage_serial(t._h)
    if serial and serial >= first and not seen[tonumber(serial)] then
      seen[tonumber(serial)] = true
      bytes = bytes + tonumber(C.ms_tensor_storage_nbytes(t._h))
    end
  end
  return bytes, unpack(r, 2, table.maxn(r))
end

function H.eq(a, b, msg)
  if a ~= b then error((msg or "values differ") .. ": got " .. fmt(a) .. ", want " .. fmt(b), 2) end
end

function H.near(a, b, tol, msg)
  tol = tol or 1e-6
  if type(a) == "table" then
    H.eq(#a, #b, (msg or "") .. " length")
    for i = 1, #a do H.near(a[i], b[i], tol, (msg or "") .. " [" .. i .. "]") end
    return
  end
  if not (math.abs(a - b) <= tol * (1 + math.abs(b))) then
    error((msg or "not near") .. ": got " .. tostring(a) .. ", want " .. tostring(b) .. " (tol " .. tol .. ")", 2)
  end
end

function H.same_list(a, b, msg)
  H.eq(#a, #b, (msg or "") .. " length")
  for i = 1, #a do H.eq(a[i], b[i], (msg or "") .. " [" .. i .. "]") end
end

-- Tensors a and b hold exactly the same values element by element (NaN equal to NaN).
function H.same_values(a, b, what)
  local u, v = a:to("f64"):contiguous():view(-1):tolist(), b:to("f64"):contiguous():view(-1):tolist()
  H.eq(#u, #v, what .. ": sizes")
  for i = 1, #u do
    if not (u[i] == v[i] or (u[i] ~= u[i] and v[i] ~= v[i])) then
      error(string.format("%s at %d: %.9g vs %.9g", what, i, u[i], v[i]), 2)
    end
  end
end

-- fn must raise an error whose message contains every given fragment.
function H.raises(fn, ...)
  local ok, err = pcall(fn)
  if ok then error("expected an error, none raised", 2) end
  for _, frag in ipairs { ... } do
    if not tostring(err):find(frag, 1, true) then
      error("error message lacks '" .. frag .. "': " .. tostring(err), 2)
    end
  end
  return err
end

-- Shared test data helpers ---------------------------------------------------------------
-- A deterministic LCG: rng(seed, lo, hi)() gives values in [lo, hi) (default [-2, 2)).
function H.rng(seed, lo, hi)
  lo, hi = lo or -2, hi or 2
  return function()
    seed = (seed * 1103515245 + 12345) % 2147483648
    return lo + (hi - lo) * seed / 2147483648
  end
end

-- A tensor of shape filled from rnd (f64 unless dtype), optionally requiring grad.
function H.rand_tensor(rnd, shape, dtype, requires_grad)
  local ms = require "moonseg"
  local n = 1
  for _, d in ipairs(shape) do n = n * d end
  local flat = {}
  for i = 1, n do flat[i] = rnd() end
  local t = ms.tensor(flat, { dtype = dtype or "f64" }):view(shape)
  if requires_grad then t:requires_grad_(true) end
  return t
end

-- All values of a tensor as a flat row-major Lua list.
function H.values(t)
  local b, n = t:to_f64_buffer()
  local r = {}
  for i = 1, n do r[i] = b[i - 1] end
  return r
end

-- n values from rnd scaled to [lo, hi) (rnd gives [0, 1)).
function H.rlist(rnd, n, lo, hi)
  local t = {}
  for i = 1, n do t[i] = lo + (hi - lo) * rnd() end
  return t
end

-- A tensor's values as a flat list via tolist (booleans stay booleans).
function H.flat(t)
  local r = {}
  local function walk(v) if type(v) == "table" then for _, x in ipairs(v) do walk(x) end else r[#r + 1] = v end end
  walk(t:tolist())
  return r
end

-- A contiguous tensor from a flat list (f64 unless dtype), optionally requiring grad.
function H.tensor(vals, shape, dtype, requires_grad)
  local t = require("moonseg").tensor(vals, { dtype = dtype or "f64" }):reshape(shape):contiguous()
  if requires_grad then t:requires_grad_() end
  return t
end

-- Files: whole-file reads and writes, existence.
function H.read_file(path)
  local f = assert(io.open(path, "rb"))
  local s = f:read("*a")
  f:close()
  return s
end
function H.write_file(path, s)
  local f = assert(io.open(path, "wb"))
  f:write(s)
  f:close()
end
function H.exists(path)
  local f = io.open(path, "rb")
  if f then f:close() end
  return f ~= nil
end

-- Prints the closing line and exits non-zero on any failure.
-- Timing promises. H.within: a call configured with `timeout` seconds gave up no later than
-- the timeout plus a slack proportional to it (2 * timeout + 2 s: room for a loaded machine
-- and the sanitizer build, still far from a hang); checked in every build. H.fast: a speed
-- promise with an absolute bound; checked only where MOONSEG_TEST_SPEED=1 (the release
-- build's tests, tests/CMakeLists.txt), since the sanitizer build runs several times slower.
function H.within(elapsed, timeout, what)
  local limit = 2 * timeout + 2
  if not (elapsed < limit) then
    error(string.format("%s took %.2f s with a %g s timeout (limit %g s)", what or "call", elapsed, timeout, limit), 2)
  end
end
H.speed_checks = os.getenv("MOONSEG_TEST_SPEED") == "1"
function H.fast(elapsed, limit, what)
  if H.speed_checks and not (elapsed < limit) then
    error(string.format("%s took %.2f s (promised under %g s)", what or "call", elapsed, limit), 2)
  end
end

function H.done()
  local gc = package.loaded["moonseg.gradcheck"]
  if gc and gc.count > 0 then print(string.format("gradient checks: %d", gc.count)) end
  print(string.format("%d passed, %d failed", H.passed, H.failed))
  os.exit(H.failed == 0 and 0 or 1)
end

return H
