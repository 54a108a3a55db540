-- norm.lua: batch normalization and layer normalization (F.batch_norm, F.layer_norm) with autograd.
return function(ms, T, A, L)
  local C, ctx, out, check = L.C, L.ctx, L.out, L.check
  local handle, wrap = T.handle, T.wrap

  local function h_or_nil(t, op, name)
    if t == nil then return nil end
    if not T.is_tensor(t) then error(op .. ": " .. name .. " must be a tensor or nil, got " .. type(t), 4) end
    return handle(t)
  end

  local function bn_backward(node, g)
    local s = node.saved
    local want_x, want_w, want_b = node.next[1], node.next[2], node.next[3]
    out[0], out[1], out[2] = nil, nil, nil
    check(C.ms_batch_norm_backward(ctx, handle(g), handle(s.x), s.w and handle(s.w) or nil,
      handle(s.mean), handle(s.invstd), s.training and 1 or 0, want_x and out or nil,
      want_w and out + 1 or nil, want_b and out + 2 or nil))
    return want_x and wrap(out[0]) or nil, want_w and wrap(out[1]) or nil,
      want_b and wrap(out[2]) or nil
  end

  -- batch_norm(x [N, C, ...], running_mean, running_var, weight, bias, training=false,
  --            momentum=0.1, eps=1e-5). In training the batch statistics normalise x and the
  -- running stats (when given) are updated in place: r = (1 - momentum) * r + momentum * batch
  -- (unbiased batch variance for running_var), as in PyTorch. Gradients flow to x, weight, bias.
  local function batch_norm(x, running_mean, running_var, weight, bias, training, momentum, eps)
    local op = "batch_norm"
    if not T.is_tensor(x) then error("batch_norm: input must be a tensor", 2) end
    training = training and true or false
    momentum = momentum or 0.1
    eps = eps or 1e-5
    local hrm, hrv = h_or_nil(running_mean, op, "running_mean"), h_or_nil(running_var, op, "running_var")
    local hw, hb = h_or_nil(weight, op, "weight"), h_or_nil(bias, op, "bias")
    out[0], out[1], out[2] = nil, nil, nil
    local grad = A.needs(x, weight, bias)
    check(C.ms_batch_norm(ctx, handle(x), hw, hb, hrm, hrv, training and 1 or 0, momentum, eps,
      out, grad and out + 1 or nil, grad and out + 2 or nil), 2)
    local y = wrap(out[0])
    if grad then
      local mean, invstd = wrap(out[1]), wrap(out[2])
      A.record("batch_norm", { x, weight, bias }, { y }, bn_backward,
        { x = A.save(x), w = A.save(weight), mean = mean, invstd = invstd, training = training })
    end
    return y
  end

  local function ln_backward(node, g)
    local s = node.saved
    local want_x, want_w, want_b = node.next[1], node.next[2], node.next[3]
    out[0], out[1], out[2] = nil, nil, nil
    check(C.ms_layer_norm_backward(ctx, handle(g), handle(s.x), s.nd, s.w and handle(s.w) or nil,
      handle(s.mean), handle(s.rstd), want_x and out or nil, want_w and out + 1 or nil,
      want_b and out + 2 or nil))
    return want_x and wrap(out[0]) or nil, want_w and wrap(out[1]) or nil,
      want_b and wrap(out[2]) or nil
  end

  -- layer_norm(x, normalized_shape, weight, bias, eps=1e-5): normalises over the trailing
  -- dims given by normalized_shape (a number or a list); weight/bias shaped like them or nil.
  local function layer_norm(x, normalized_shape, weight, bias, eps)
    local op = "layer_norm"
    if not T.is_tensor(x) then error("layer_norm: input must be a tensor", 2) end
    local ns = type(normalized_shape) == "number" and { normalized_shape } or normalized_shape
    if type(ns) ~= "table" or #ns == 0 then
      error("layer_norm: normalized_shape must be a number or a non-empty list, got " .. tostring(normalized_shape), 2)
    end
    local xs = x:size()
    local ok = #ns <= #xs
    for i = 1, #ns do
      if not ok then break end
      ok = xs[#xs - #ns + i] == ns[i]
    end
    if not ok then
      error("layer_norm: normalized_shape [" .. table.concat(ns, ", ") .. "] does not match the " ..
            "trailing dims of input [" .. table.concat(xs, ", ") .. "] " .. x:type(), 2)
    end
    local hw, hb = h_or_nil(weight, op, "weight"), h_or_nil(bias, op, "bias")
    eps = eps or 1e-5
    out[0], out[1], out[2] = nil, nil, nil
    local grad = A.needs(x, weight, bias)
    check(C.ms_layer_norm(ctx, handle(x), #ns, hw, hb, eps, out, grad and out + 1 or nil,
      grad and out + 2 or nil), 2)
    local y = wrap(out[0])
    if grad then
      local mean, rstd = wrap(out[1]), wrap(out[2])
      A.record("layer_norm", { x, weight, bias }, { y }, ln_backward,
        { x = A.save(x), w = A.save(weight), mean = mean, rstd = rstd, nd = #ns })
    end
    return y
  end

  ms.functional.batch_norm = batch_norm
  ms.functional.layer_norm = layer_norm
  ms.batch_norm = batch_norm
  ms.layer_norm = layer_norm
end
