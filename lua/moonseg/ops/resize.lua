-- resize.lua: F.interpolate (bilinear with align_corners, legacy nearest) with autograd.
return function(ms, T, A, L)
  local C, ctx, out, check = L.C, L.ctx, L.out, L.check
  local handle, wrap = T.handle, T.wrap
  local modes = { nearest = 0, bilinear = 1 }

  local function pair(v, name)
    local a, b
    if type(v) == "number" then a, b = v, v
    elseif type(v) == "table" and #v == 2 then a, b = v[1], v[2]
    else error("interpolate: " .. name .. " must be a number or {h, w}, got " .. tostring(v), 4) end
    if type(a) ~= "number" or type(b) ~= "number" then
      error("interpolate: " .. name .. " must be numbers", 4)
    end
    return a, b
  end

  -- interpolate(x [N, C, H, W], {size = {h, w} | n, scale_factor = s | {sh, sw}},
  --             mode = "nearest" | "bilinear", align_corners = false). Options may also carry
  -- mode and align_corners. With scale_factor the output is floor(in * s) and the source
  -- coordinates use in / out (PyTorch's recompute_scale_factor = true).
  local function interpolate(x, opts, mode, align_corners)
    if not T.is_tensor(x) then error("interpolate: input must be a tensor", 2) end
    opts = opts or {}
    if type(opts) ~= "table" then error("interpolate: second argument must be {size=} or {scale_factor=}", 2) end
    mode = mode or opts.mode or "nearest"
    if align_corners == nil then align_corners = opts.align_corners end
    local code = modes[mode]
    if code == nil then
      error("interpolate: mode must be 'nearest' or 'bilinear', got '" .. tostring(mode) .. "'", 2)
    end
    if code == 0 and align_corners ~= nil then
      error("interpolate: align_corners can only be set with mode 'bilinear'", 2)
    end
    if x:dim() ~= 4 then
      error("interpolate: input must be 4-d [N, C, H, W], got [" .. table.concat(x:size(), ", ") .. "] " .. x:type(), 2)
    end
    local ih, iw = x:size(3), x:size(4)
    local oh, ow
    if opts.size ~= nil and opts.scale_factor ~= nil then
      error("interpolate: give either size or scale_factor, not both", 2)
    elseif opts.size ~= nil then
      oh, ow = pair(opts.size, "size")
    elseif opts.scale_factor ~= nil then
      local sh, sw = pair(opts.scale_factor, "scale_factor")
      if not (sh > 0 and sw > 0) then error("interpolate: scale_factor must be > 0", 2) end
      oh, ow = math.floor(ih * sh), math.floor(iw * sw)
    else
      error("interpolate: need size or scale_factor", 2)
    end
    if oh ~= math.floor(oh) or ow ~= math.floor(ow) then
      error("interpolate: size must be integers, got {" .. oh .. ", " .. ow .. "}", 2)
    end
    local ac = align_corners and 1 or 0
    local y = T.take(C.ms_interpolate(ctx, handle(x), oh, ow, code, ac, out), 2)
    if A.needs(x) then
      A.record("interpolate", { x }, { y }, function(_, g)
        check(C.ms_interpolate_backward(ctx, handle(g), ih, iw, code, ac, out))
        return wrap(out[0])
      end)
    end
    return y
  end

  ms.functional.interpolate = interpolate
  ms.interpolate = interpolate
  T.interpolate = interpolate
end
