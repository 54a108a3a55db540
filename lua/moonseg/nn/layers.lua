-- layers.lua: the layers the segmentation models need (Conv2d, BatchNorm2d, pools, activations...).
local Module = require "moonseg.nn.module"

return function(nn, ms)
  local F = ms.functional
  local class, Parameter = Module.class, Module.Parameter

  local function pair(v) return type(v) == "table" and v or { v, v } end

  -- Conv2d(in, out, kernel, {stride=1, padding=0, dilation=1, groups=1, bias=true}).
  -- Weights ~ N(0, 2/fan_in) as Paddle's default convolution initialiser; bias zero.
  nn.Conv2d = class("Conv2d")
  function nn.Conv2d:__init(cin, cout, k, o)
    o = o or {}
    local kh, kw = unpack(pair(k))
    self.in_channels, self.out_channels, self.kernel_size = cin, cout, { kh, kw }
    self.stride, self.padding = o.stride or 1, o.padding or 0
    self.dilation, self.groups = o.dilation or 1, o.groups or 1
    if cin % self.groups ~= 0 or cout % self.groups ~= 0 then
      error(string.format("Conv2d: groups %d must divide in_channels %d and out_channels %d", self.groups, cin, cout), 2)
    end
    local fan_in = cin / self.groups * kh * kw
    self:register_parameter("weight", ms.randn(cout, cin / self.groups, kh, kw) * math.sqrt(2 / fan_in))
    if o.bias ~= false then self:register_parameter("bias", ms.zeros(cout)) end
  end
  function nn.Conv2d:forward(x)
    return F.conv2d(x, self.weight, self.bias, { stride = self.stride, padding = self.padding,
      dilation = self.dilation, groups = self.groups })
  end
  function nn.Conv2d:extra_repr()
    local s = string.format("%d, %d, kernel_size=[%d, %d]", self.in_channels, self.out_channels,
      self.kernel_size[1], self.kernel_size[2])
    if self.stride ~= 1 then s = s .. ", stride=" .. tostring(type(self.stride) == "table" and table.concat(self.stride, "x") or self.stride) end
    if self.padding ~= 0 then s = s .. ", padding=" .. tostring(type(self.padding) == "table" and table.concat(self.padding, "x") or self.padding) end
    if self.dilation ~= 1 then s = s .. ", dilation=" .. tostring(self.dilation) end
    if self.groups ~= 1 then s = s .. ", groups=" .. self.groups end
    if not self.bias then s = s .. ", bias=false" end
    return s
  end

  -- BatchNorm2d(C, {momentum=0.9, epsilon=1e-5}): Paddle's meaning of momentum (weight of
  -- the running value); buffers named _mean and _variance as in Paddle checkpoints.
  nn.BatchNorm2d = class("BatchNorm2d")
  function nn.BatchNorm2d:__init(c, o)
    o = o or {}
    self.num_features, self.momentum, self.epsilon = c, o.momentum or 0.9, o.epsilon or o.eps or 1e-5
    self:register_parameter("weight", ms.ones(c))
    self:register_parameter("bias", ms.zeros(c))
    self:register_buffer("_mean", ms.zeros(c))
    self:register_buffer("_variance", ms.ones(c))
  end
  function nn.BatchNorm2d:forward(x)
    return F.batch_norm(x, self._mean, self._variance, self.weight, self.bias, self.training,
      1 - self.momentum, self.epsilon)
  end
  function nn.BatchNorm2d:extra_repr()
    return string.format("%d, momentum=%g, epsilon=%g", self.num_features, self.momentum, self.epsilon)
  end

  local function simple(name, fn, repr)
    local cls = class(name)
    function cls:__init(...) self.args = { ... } end
    function cls:forward(x) return fn(x, unpack(self.args)) end
    function cls:extra_repr() return repr and repr(unpack(self.args)) or "" end
    return cls
  end

  nn.ReLU = simple("ReLU", function(x) return F.relu(x) end)
  nn.Sigmoid = simple("Sigmoid", function(x) return F.sigmoid(x) end)
  nn.Identity = simple("Identity", function(x) return x end)
  nn.Dropout = class("Dropout")
  function nn.Dropout:__init(p) self.p = p or 0.5 end
  function nn.Dropout:forward(x) return F.dropout(x, self.p, self.training) end
  function nn.Dropout:extra_repr() return "p=" .. self.p end

  -- AvgPool2d(kernel, stride, padding, {ceil_mode=false, exclusive=true}): Paddle's
  -- `exclusive` is PyTorch's `not count_include_pad`.
  nn.AvgPool2d = class("AvgPool2d")
  function nn.AvgPool2d:__init(k, s, p, o)
    o = o or {}
    self.k, self.s, self.p = k, s or k, p or 0
    self.ceil_mode = o.ceil_mode or false
    local exclusive = o.exclusive
    if exclusive == nil then exclusive = not o.count_include_pad end
    self.exclusive = exclusive
  end
  function nn.AvgPool2d:forward(x)
    return F.avg_pool2d(x, self.k, self.s, self.p, { ceil_mode = self.ceil_mode, count_include_pad = not self.exclusive })
  end
  function nn.AvgPool2d:extra_repr()
    return string.format("kernel_size=%s, stride=%s, padding=%s, exclusive=%s", tostring(self.k), tostring(self.s), tostring(self.p), tostring(self.exclusive))
  end

  nn.MaxPool2d = class("MaxPool2d")
  function nn.MaxPool2d:__init(k, s, p, o)
    self.k, self.s, self.p, self.ceil_mode = k, s or k, p or 0, (o or {}).ceil_mode or false
  end
  function nn.MaxPool2d:forward(x) return F.max_pool2d(x, self.k, self.s, self.p, { ceil_mode = self.ceil_mode }) end

  nn.AdaptiveAvgPool2d = class("AdaptiveAvgPool2d")
  function nn.AdaptiveAvgPool2d:__init(size) self.size = size end
  function nn.AdaptiveAvgPool2d:forward(x) return F.adaptive_avg_pool2d(x, self.size) end
  function nn.AdaptiveAvgPool2d:extra_repr()
    return "output_size=" .. (type(self.size) == "table" and table.concat(self.size, "x") or tostring(self.size))
  end

  -- Sequential(m1, m2, ...): children named 0, 1, ... as in Paddle/PyTorch.
  nn.Sequential = class("Sequential")
  function nn.Sequential:__init(...)
    for i, m in ipairs { ... } do self:add_module(tostring(i - 1), m) end
  end
  function nn.Sequential:forward(x)
    for _, m in ipairs(self:children()) do x = m(x) end
    return x
  end
  function nn.Sequential:get(i) return self._modules[tostring(i - 1)] end
  function nn.Sequential:len() return #self._module_names end

  nn.ModuleList = class("ModuleList")
  function nn.ModuleList:__init(list)
    for i, m in ipairs(list or {}) do self:add_module(tostring(i - 1), m) end
  end
  function nn.ModuleList:append(m) self:add_module(tostring(#self._module_names), m) end
  function nn.ModuleList:get(i) return self._modules[tostring(i - 1)] end
  function nn.ModuleList:len() return #self._module_names end
  function nn.ModuleList:forward() error("ModuleList has no forward; iterate over :children()", 2) end
end
