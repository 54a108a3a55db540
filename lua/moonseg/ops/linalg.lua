-- linalg.lua: matmul / mm / bmm with autograd (broadcast batch dims summed back in backward).
return function(ms, T, A, L)
  local C, ctx, out = L.C, L.ctx, L.out
  local take, handle = T.take, T.handle

  local function raw_matmul(a, b) return take(C.ms_matmul(ctx, handle(a), handle(b), out), 3) end
  local function t_last(x) return x:transpose(-1, -2) end
  local function same_shape(a, b)
    if #a ~= #b then return false end
    for i = 1, #a do if a[i] ~= b[i] then return false end end
    return true
  end
  -- g (shaped like the full [batch..., n, m] product) summed to shape, then reshaped to final.
  local function reduce_to(g, shape, final)
    local r = g
    if not same_shape(g:size(), shape) then
      r = g:sum_to(shape)
      g:free()
    end
    if not same_shape(shape, final) then r = r:reshape(final) end
    return r
  end

  local function backward(node, g)
    local s = node.saved
    local ash, bsh = s.ash, s.bsh
    local na, nb = #ash, #bsh
    -- Operands and g with the dims numpy dropped for 1-d operands put back.
    local gs = g:size()
    if na == 1 then table.insert(gs, nb == 1 and #gs + 1 or #gs, 1) end
    if nb == 1 then gs[#gs + 1] = 1 end
    local g2 = g:reshape(gs)
    local ga, gb
    if node.next[1] then
      local b2 = nb == 1 and s.b:reshape(bsh[1], 1) or s.b
      local a2shape = na == 1 and { 1, ash[1] } or ash
      ga = reduce_to(raw_matmul(g2, t_last(b2)), a2shape, ash)
    end
    if node.next[2] then
      local a2 = na == 1 and s.a:reshape(1, ash[1]) or s.a
      local b2shape = nb == 1 and { bsh[1], 1 } or bsh
      if nb == 2 and na > 2 then
        -- [B..., n, k] x [k, m]: one [k, B*n] x [B*n, m] product instead of a batch to sum.
        local k = ash[na]
        gb = raw_matmul(t_last(a2:reshape(-1, k)), g2:reshape(-1, gs[#gs]))
      else
        gb = reduce_to(raw_matmul(t_last(a2), g2), b2shape, bsh)
      end
    end
    return ga, gb
  end

  -- numpy/torch.matmul: 1-d operands are vectors, batch dims broadcast.
  local function matmul(a, b)
    if not T.is_tensor(a) or not T.is_tensor(b) then error("matmul: both operands must be tensors", 2) end
    local y = raw_matmul(a, b)
    if A.needs(a, b) then
      A.record("matmul", { a, b }, { y }, backward, {
        ash = a:size(), bsh = b:size(),
        a = b.requires_grad and A.save(a) or nil,
        b = a.requires_grad and A.save(b) or nil,
      })
    end
    return y
  end
  ms.matmul = matmul
  T.matmul = matmul

  local function shape_str(x) return "[" .. table.concat(x:size(), ", ") .. "] " .. x:type() end
  function T.mm(a, b)
    if a:dim() ~= 2 or b:dim() ~= 2 then
      error("mm: expected 2-d tensors, got " .. shape_str(a) .. " and " .. shape_str(b), 2)
    end
    return matmul(a, b)
  end
  function T.bmm(a, b)
    if a:dim() ~= 3 or b:dim() ~= 3 or a:size(1) ~= b:size(1) then
      error("bmm: expected 3-d tensors with the same batch size, got " .. shape_str(a) .. " and " ..
            shape_str(b), 2)
    end
    return matmul(a, b)
  end
  ms.mm, ms.bmm = T.mm, T.bmm
end
