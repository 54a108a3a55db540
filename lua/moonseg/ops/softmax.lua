-- softmax.lua: softmax, log_softmax and cross-entropy with autograd.
return function(ms, T, A, L)
  local C, ctx, out, check = L.C, L.ctx, L.out, L.check
  local take, handle = T.take, T.handle
  local F = ms.functional

  local function softmax_impl(x, dim, log, name)
    if not T.is_tensor(x) then error(name .. ": input must be a tensor", 3) end
    if dim == nil then
      error(name .. ": dim is required (e.g. 2 for the classes of [N, C, H, W] scores, -1 for the last)", 3)
    end
    local cd = T.cdim(dim, x:dim())
    local lg = log and 1 or 0
    local y = take(C.ms_softmax(ctx, handle(x), cd, lg, out), 3)
    if A.needs(x) then
      A.record(name, { x }, { y }, function(node, g)
        return take(C.ms_softmax_backward(ctx, handle(g), handle(node.saved.y), cd, lg, out))
      end, { y = A.save(y) })
    end
    return y
  end

  function F.softmax(x, dim) return softmax_impl(x, dim, false, "softmax") end
  function F.log_softmax(x, dim) return softmax_impl(x, dim, true, "log_softmax") end
  function T.softmax(x, dim) return softmax_impl(x, dim, false, "softmax") end
  function T.log_softmax(x, dim) return softmax_impl(x, dim, true, "log_softmax") end
  ms.softmax, ms.log_softmax = F.softmax, F.log_softmax

  local reductions = { none = 0, mean = 1, sum = 2 }

  -- cross_entropy(logits [N, C, ...], target i64 [N, ...], {weight=, ignore_index=, reduction=})
  -- ignore_index defaults to 255, PaddleSeg's label for "void" pixels (PyTorch's default is
  -- -100). reduction "mean" divides by the summed class weights of the counted targets, and
  -- gives 0 (not PyTorch's nan) when every target is ignored.
  function F.cross_entropy(logits, target, opts)
    opts = opts or {}
    if not T.is_tensor(logits) or not T.is_tensor(target) then
      error("cross_entropy: logits and target must be tensors", 2)
    end
    local red = reductions[opts.reduction or "mean"]
    if red == nil then
      error("cross_entropy: reduction must be 'none', 'mean' or 'sum', got '" .. tostring(opts.reduction) .. "'", 2)
    end
    local ignore = opts.ignore_index or 255
    local weight = opts.weight
    if weight ~= nil and not T.is_tensor(weight) then
      error("cross_entropy: weight must be a tensor of one weight per class", 2)
    end
    local wh = weight and handle(weight) or nil
    check(C.ms_cross_entropy(ctx, handle(logits), handle(target), wh, ignore, red, out, out + 1))
    local loss, lse = T.wrap(out[0]), T.wrap(out[1])
    if A.needs(logits) then
      A.record("cross_entropy", { logits }, { loss }, function(node, g)
        local s = node.saved
        return take(C.ms_cross_entropy_backward(ctx, handle(g), handle(s.logits), handle(s.target),
          s.weight and handle(s.weight) or nil, ignore, red, handle(s.lse), out))
      end, { logits = A.save(logits), target = A.save(target), weight = A.save(weight), lse = lse })
    else
      lse:free()
    end
    return loss
  end
end
