-- join.lua: cat, stack, split and chunk with autograd.
local ffi = require "ffi"

return function(ms, T, A, L)
  local C, ctx, out = L.C, L.ctx, L.out

  local function legacy_empty(x) return x:dim() == 1 and x:size(1) == 0 end

  -- cat(list, dim = 1): dtypes promote as in PyTorch; [0]-shaped tensors are skipped.
  function ms.cat(list, dim)
    dim = dim or 1
    if type(list) ~= "table" or T.is_tensor(list) or #list == 0 then
      error("cat: expected a non-empty list of tensors", 2)
    end
    local n = #list
    local hs = ffi.new("ms_tensor*[?]", n)
    local ref
    for i, x in ipairs(list) do
      if not T.is_tensor(x) then error("cat: element " .. i .. " is a " .. type(x) .. ", not a tensor", 2) end
      hs[i - 1] = T.handle(x)
      if not ref and not legacy_empty(x) then ref = x end
    end
    local nd = ref and ref:dim() or 1
    local cd = T.cdim(dim, math.max(nd, 1))
    local y = T.take(C.ms_cat(ctx, hs, n, cd, out), 2)
    if A.needs_list(list, n) then
      local d = cd < 0 and nd + cd + 1 or cd + 1
      local info = {}
      for i, x in ipairs(list) do
        info[i] = { shape = x:size(), dtype = x:type(), skip = legacy_empty(x) and nd ~= 1 }
      end
      A.record("cat", list, { y }, function(node, g)
        local grads, off = {}, 0
        for i, inf in ipairs(info) do
          local len = inf.skip and 0 or inf.shape[d]
          if node.next[i] then
            if len == 0 then
              grads[i] = ms.zeros(inf.shape, { dtype = inf.dtype, device = g:device_str() })
            else
              local part = g:narrow(d, off + 1, len)
              local gi = part:to(inf.dtype)
              if gi == part then gi = part:clone() end
              part:free()
              grads[i] = gi
            end
          end
          off = off + len
        end
        return unpack(grads, 1, n)
      end)
    end
    return y
  end
  ms.concat = ms.cat

  -- stack(list, dim = 1): joins equal-shaped tensors along a new dim.
  function ms.stack(list, dim)
    dim = dim or 1
    if type(list) ~= "table" or T.is_tensor(list) or #list == 0 then
      error("stack: expected a non-empty list of tensors", 2)
    end
    local shape = list[1]:size()
    local want = table.concat(shape, ", ")
    for i = 2, #list do
      local s = table.concat(list[i]:size(), ", ")
      if s ~= want then
        error("stack: tensor " .. i .. " has shape [" .. s .. "] but tensor 1 has [" .. want ..
              "]; all must have the same shape", 2)
      end
    end
    local nd = #shape + 1
    local cd = T.cdim(dim, nd)
    local d = cd < 0 and nd + cd + 1 or cd + 1
    local parts = {}
    for i, x in ipairs(list) do parts[i] = x:unsqueeze(d) end
    local y = ms.cat(parts, d)
    for _, p in ipairs(parts) do if not p.requires_grad then p:free() end end
    return y
  end

  -- split(size_or_sizes, dim = 1): a list of views (the last may be smaller).
  function T.split(x, size, dim)
    dim = dim or 1
    local nd = x:dim()
    local cd = T.cdim(dim, nd)
    local d = cd < 0 and nd + cd + 1 or cd + 1
    local n = x:size(d)
    local sizes = {}
    if type(size) == "table" then
      local total = 0
      for i, s in ipairs(size) do sizes[i] = s; total = total + s end
      if total ~= n then
        error("split: sizes {" .. table.concat(size, ", ") .. "} sum to " .. total ..
              " but dim " .. dim .. " has size " .. n, 2)
      end
    else
      if type(size) ~= "number" or size < 1 or size ~= math.floor(size) then
        error("split: size must be a positive integer, got " .. tostring(size), 2)
      end
      local left = n
      repeat
        sizes[#sizes + 1] = math.min(size, left)
        left = left - size
      until left <= 0
    end
    local parts, off = {}, 0
    for i, s in ipairs(sizes) do
      parts[i] = x:narrow(d, off + 1, s)
      off = off + s
    end
    return parts
  end
  function T.split_with_sizes(x, sizes, dim) return x:split(sizes, dim) end

  -- chunk(n, dim = 1): at most n views of ceil(size / n) along dim, as torch.chunk.
  function T.chunk(x, n, dim)
    dim = dim or 1
    if type(n) ~= "number" or n < 1 or n ~= math.floor(n) then
      error("chunk: number of chunks must be a positive integer, got " .. tostring(n), 2)
    end
    local size = math.max(math.ceil(x:size(dim) / n), 1)
    return x:split(size, dim)
  end
  ms.split = T.split
  ms.chunk = T.chunk
end
