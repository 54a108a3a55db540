-- serialize.lua: ms.save / ms.load of named tensors as safetensors files.
local ffi = require "ffi"

return function(ms, T, L)
  local C, ctx, out, check = L.C, L.ctx, L.out, L.check

  -- ms.save(path, {name = tensor, ...}, {key = "string", ...}): atomic; names sorted.
  function ms.save(path, tensors, metadata)
    if type(path) ~= "string" then error("ms.save: path must be a string", 2) end
    if type(tensors) ~= "table" then error("ms.save: expected a table of name -> tensor", 2) end
    local names = {}
    for k, v in pairs(tensors) do
      if type(k) ~= "string" then error("ms.save: key " .. tostring(k) .. " is not a string", 2) end
      if not T.is_tensor(v) then error("ms.save: value of '" .. k .. "' is not a tensor", 2) end
      names[#names + 1] = k
    end
    table.sort(names)
    local n = #names
    local cnames = ffi.new("const char*[?]", n + 1)
    local handles = ffi.new("ms_tensor*[?]", n + 1)
    for i, k in ipairs(names) do
      cnames[i - 1] = k
      handles[i - 1] = T.handle(tensors[k])
    end
    local mk, mv = {}, {}
    for k, v in pairs(metadata or {}) do mk[#mk + 1] = k end
    table.sort(mk)
    local ckeys = ffi.new("const char*[?]", #mk + 1)
    local cvals = ffi.new("const char*[?]", #mk + 1)
    for i, k in ipairs(mk) do
      mv[i] = tostring(metadata[k])
      ckeys[i - 1] = k
      cvals[i - 1] = mv[i]
    end
    check(C.ms_safetensors_save(ctx, path, cnames, handles, n, ckeys, cvals, #mk))
  end

  -- ms.load(path[, {device=}]) -> {name = tensor}, {key = "string"}: cpu:0 tensors, or on
  -- device when given (PyTorch's map_location), whatever device they were saved from.
  function ms.load(path, opts)
    if type(path) ~= "string" then error("ms.load: path must be a string", 2) end
    local device = opts and opts.device and T.canonical_device(opts.device) or nil
    local p = ffi.new("ms_safetensors*[1]")
    check(C.ms_safetensors_open(path, p))
    local st = ffi.gc(p[0], C.ms_safetensors_close)
    local tensors, meta = {}, {}
    for i = 0, C.ms_safetensors_count(st) - 1 do
      check(C.ms_safetensors_get(ctx, st, i, out))
      local t = T.wrap(out[0])
      if device and device ~= "cpu" then
        local moved = t:to(device)
        t:free()
        t = moved
      end
      tensors[ffi.string(C.ms_safetensors_name(st, i))] = t
    end
    for i = 0, C.ms_safetensors_metadata_count(st) - 1 do
      meta[ffi.string(C.ms_safetensors_metadata_key(st, i))] = ffi.string(C.ms_safetensors_metadata_value(st, i))
    end
    ffi.gc(st, nil)
    C.ms_safetensors_close(st)
    return tensors, meta
  end
end
