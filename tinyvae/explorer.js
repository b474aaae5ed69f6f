// tinyvae latent explorer: the trained decoder's forward pass, in plain JavaScript.
//
// tinyvae/explorer.py embeds this file, and the model it reads, into one
// explorer.html that works from disk with no network. The page reads:
//
//   { latent_dim, n_classes, likelihood, image_shape, layers, points, view, caption }
//
// from the page's JSON element "model-data" (written by explorer_model in explorer.py)
//
// and decodes the point z under the cursor with the same layers, in the same
// order and with the same formulas as the Python decoder (tinyvae/nets.py,
// tinyvae/layers.py, tinyvae/conv.py). Weights arrive as float32 and every sum
// is done in Float64: the pixels agree with the Python decoder run in float64
// on the same weights to rounding (about 1e-15), and with a float32 run to
// float32 rounding (about 1e-7).
//
// Layout conventions, as in Python: a vector is a Float64Array; an image is
// (H, W, C) flattened in that order (pixel (h, w, c) sits at (h * W + w) * C + c);
// a weight array is row-major in the shape Python gives it.
"use strict";

(function () {

  // -------------------------------------------------------------------------
  // 1. Reading the embedded numbers
  // -------------------------------------------------------------------------

  // base64 text -> its bytes.
  function bytesFromBase64(text) {
    const raw = atob(text);
    const bytes = new Uint8Array(raw.length);
    for (let i = 0; i < raw.length; i++) bytes[i] = raw.charCodeAt(i);
    return bytes;
  }

  // base64 of little-endian float32 values -> Float64Array (exact: float32 fits in float64).
  function floatsFromBase64(text) {
    const bytes = bytesFromBase64(text);
    const view = new DataView(bytes.buffer);
    const out = new Float64Array(bytes.length / 4);
    for (let i = 0; i < out.length; i++) out[i] = view.getFloat32(4 * i, true);
    return out;
  }

  // -------------------------------------------------------------------------
  // 2. Activations: the formulas of tinyvae/layers.py, element by element
  // -------------------------------------------------------------------------

  // sigma(x) = 1 / (1 + e^-x), exponentiating only -|x| so nothing overflows.
  function sigmoid(x) {
    const e = Math.exp(-Math.abs(x));
    return x >= 0 ? 1 / (1 + e) : e / (1 + e);
  }

  const ACTIVATIONS = {
    linear: (x) => x,
    relu: (x) => Math.max(x, 0),
    leaky_relu: (x) => (x > 0 ? x : 0.01 * x),
    tanh: (x) => Math.tanh(x),
    sigmoid: sigmoid,
    softplus: (x) => Math.max(x, 0) + Math.log1p(Math.exp(-Math.abs(x))),  // log(1 + e^x)
  };

  function activate(h, name) {
    const f = ACTIVATIONS[name];
    if (f === undefined) throw new Error("unknown activation " + name);
    for (let i = 0; i < h.length; i++) h[i] = f(h[i]);
    return h;
  }

  // -------------------------------------------------------------------------
  // 3. Layers: each takes a vector h and its shape, returns the next ones
  // -------------------------------------------------------------------------

  // Dense: y = h W + b.  h (D,), W (D, U), b (U,) -> y (U,).
  function dense(h, W, b) {
    const D = h.length, U = b.length;
    const y = Float64Array.from(b);
    for (let d = 0; d < D; d++) {
      const hd = h[d], row = d * U;                 // row d of W
      for (let u = 0; u < U; u++) y[u] += hd * W[row + u];
    }
    return y;
  }

  // Keras 'same' padding of a convolution over `size` pixels: (before, after),
  // the odd pixel after. The output has ceil(size / stride) pixels.
  function samePadding(size, k, stride) {
    const out = Math.ceil(size / stride);
    const total = Math.max((out - 1) * stride + k - size, 0);
    const before = Math.floor(total / 2);
    return [before, total - before];
  }

  // Convolution, 'same' padding:
  //   y[p, q, f] = b[f] + sum_{i, j, c} h[p s + i - top, q s + j - left, c] W[i, j, c, f]
  // (terms outside the image are zero).  h (H, W, C), W (k, k, C, F) -> y (ceil(H/s), ceil(W/s), F).
  function conv(h, [H, Wd, C], W, b, k, s) {
    const F = b.length, OH = Math.ceil(H / s), OW = Math.ceil(Wd / s);
    const top = samePadding(H, k, s)[0], left = samePadding(Wd, k, s)[0];
    const y = new Float64Array(OH * OW * F);
    for (let p = 0; p < OH; p++) for (let q = 0; q < OW; q++) {
      const out = (p * OW + q) * F;
      for (let f = 0; f < F; f++) y[out + f] = b[f];
      for (let i = 0; i < k; i++) {
        const r = p * s + i - top;
        if (r < 0 || r >= H) continue;
        for (let j = 0; j < k; j++) {
          const c0 = q * s + j - left;
          if (c0 < 0 || c0 >= Wd) continue;
          const at = (r * Wd + c0) * C;
          for (let c = 0; c < C; c++) {
            const hv = h[at + c], w = ((i * k + j) * C + c) * F;
            for (let f = 0; f < F; f++) y[out + f] += hv * W[w + f];
          }
        }
      }
    }
    return [y, [OH, OW, F]];
  }

  // Transposed convolution: the adjoint of the 'same' convolution above that
  // maps (H s, W s, F) to (H, W, C). Each input pixel spreads over a k x k patch:
  //   y[p s + i - top, q s + j - left, f] += h[p, q, c] W[i, j, f, c],  then + b[f]
  // (patch pixels outside the output are dropped), with (top, left) the 'same'
  // padding of a size-(H s) convolution.  h (H, W, C), W (k, k, F, C) -> y (H s, W s, F).
  function convTranspose(h, [H, Wd, C], W, b, k, s) {
    const F = b.length, OH = H * s, OW = Wd * s;
    const top = samePadding(OH, k, s)[0], left = samePadding(OW, k, s)[0];
    const y = new Float64Array(OH * OW * F);
    for (let p = 0; p < H; p++) for (let q = 0; q < Wd; q++) {
      const at = (p * Wd + q) * C;                  // input pixel (p, q)
      for (let i = 0; i < k; i++) {
        const r = p * s + i - top;
        if (r < 0 || r >= OH) continue;
        for (let j = 0; j < k; j++) {
          const c0 = q * s + j - left;
          if (c0 < 0 || c0 >= OW) continue;
          const out = (r * OW + c0) * F;
          for (let f = 0; f < F; f++) {
            const w = ((i * k + j) * F + f) * C;
            let sum = 0;
            for (let c = 0; c < C; c++) sum += h[at + c] * W[w + c];
            y[out + f] += sum;
          }
        }
      }
    }
    for (let o = 0; o < OH * OW; o++) for (let f = 0; f < F; f++) y[o * F + f] += b[f];
    return [y, [OH, OW, F]];
  }

  // One layer: (h, shape) -> [h, shape]. Layers without parameters only change the shape.
  function layerForward(layer, h, shape) {
    switch (layer.kind) {
      case "dense":
        return [activate(dense(h, layer.W, layer.b), layer.activation), [layer.units]];
      case "reshape":
        return [h, layer.shape];
      case "flatten":
        return [h, [h.length]];
      case "conv": {
        const [y, out] = conv(h, shape, layer.W, layer.b, layer.kernel, layer.stride);
        return [activate(y, layer.activation), out];
      }
      case "conv_transpose": {
        const [y, out] = convTranspose(h, shape, layer.W, layer.b, layer.kernel, layer.stride);
        return [activate(y, layer.activation), out];
      }
      default:
        throw new Error("unknown layer kind " + layer.kind);
    }
  }

  // -------------------------------------------------------------------------
  // 4. The decoder: [z | one_hot(y)] -> layers -> the picture E[x | z, y]
  // -------------------------------------------------------------------------

  // z: the L latent values; label: the digit y for a conditional VAE (n_classes > 0).
  // Returns the mean image: sigma(logits) for the Bernoulli likelihood, the
  // decoder's output itself for the Gaussian one.
  function decode(model, z, label) {
    const L = model.latent_dim, K = model.n_classes;
    let h = new Float64Array(L + K);
    for (let l = 0; l < L; l++) h[l] = z[l];
    if (K > 0) h[L + label] = 1;                    // one_hot(y) after z
    let shape = [L + K];
    for (const layer of model.layers) [h, shape] = layerForward(layer, h, shape);
    return model.likelihood === "bernoulli" ? h.map(sigmoid) : h;
  }

  // The embedded JSON -> a model whose layers hold Float64Array weights.
  function readModel(data) {
    const layers = data.layers.map((layer) => {
      const out = Object.assign({}, layer);
      if (layer.W !== undefined) {
        out.W = floatsFromBase64(layer.W);
        out.b = floatsFromBase64(layer.b);
      }
      return out;
    });
    return Object.assign({}, data, { layers: layers });
  }

  // -------------------------------------------------------------------------
  // 5. The page: the latent plane, the decoded digit, and their controls
  // -------------------------------------------------------------------------

  // matplotlib's tab10, the colours of tinyvae's latent scatter PNG (digit 0..9).
  const COLOURS = ["#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd",
                   "#8c564b", "#e377c2", "#7f7f7f", "#bcbd22", "#17becf"];
  const MARGIN = 40;                                // plane pixels kept for the axis labels

  function start() {
    const data = JSON.parse(document.getElementById("model-data").textContent);
    const model = readModel(data);
    const [zlo, zhi] = model.view;                  // the plane shows [zlo, zhi]^2
    const [IH, IW] = model.image_shape;
    const plane = document.getElementById("plane");
    const digit = document.getElementById("digit");
    const readout = document.getElementById("readout");
    const mode = document.getElementById("mode");

    const state = {
      pinned: [0, 0],                               // the clicked (or keyed) z
      hover: null,                                  // z under the cursor, or null
      label: 0,                                     // y, for a conditional VAE
      pixels: null,                                 // the last decoded picture
    };

    // Plane geometry: z <-> canvas pixel (z2 grows upwards).
    const size = () => plane.clientWidth;
    const span = () => size() - 2 * MARGIN;
    const toPixel = ([z1, z2]) => [MARGIN + (z1 - zlo) / (zhi - zlo) * span(),
                                   MARGIN + (zhi - z2) / (zhi - zlo) * span()];
    const toZ = (px, py) => [zlo + (px - MARGIN) / span() * (zhi - zlo),
                             zhi - (py - MARGIN) / span() * (zhi - zlo)];
    const clamp = (v) => Math.min(zhi, Math.max(zlo, v));

    // The scatter of test digits is drawn once, into an off-screen canvas.
    let background = null;
    function drawBackground() {
      const dpr = window.devicePixelRatio || 1, n = size();
      plane.width = plane.height = Math.round(n * dpr);
      background = document.createElement("canvas");
      background.width = background.height = plane.width;
      const g = background.getContext("2d");
      g.setTransform(dpr, 0, 0, dpr, 0, 0);
      g.fillStyle = "#fff";
      g.fillRect(0, 0, n, n);
      // grid lines and labels at whole z values
      g.font = "13px sans-serif";
      g.fillStyle = "#444";
      g.strokeStyle = "#ddd";
      for (let v = Math.ceil(zlo); v <= Math.floor(zhi); v++) {
        const [x, y] = toPixel([v, v]);
        g.beginPath(); g.moveTo(x, MARGIN); g.lineTo(x, n - MARGIN); g.stroke();
        g.beginPath(); g.moveTo(MARGIN, y); g.lineTo(n - MARGIN, y); g.stroke();
        g.textAlign = "center"; g.fillText(String(v), x, n - MARGIN + 16);
        g.textAlign = "right"; g.fillText(String(v), MARGIN - 6, y + 4);
      }
      g.textAlign = "center";
      g.fillText("z1", n / 2, n - 6);
      g.save(); g.translate(12, n / 2); g.rotate(-Math.PI / 2); g.fillText("z2", 0, 0); g.restore();
      g.strokeStyle = "#888";
      g.strokeRect(MARGIN, MARGIN, span(), span());
      // the test digits' z means, coloured by label
      if (model.points) {
        const z = floatsFromBase64(model.points.z), labels = bytesFromBase64(model.points.labels);
        g.globalAlpha = 0.5;
        for (let i = 0; i < labels.length; i++) {
          const [x, y] = toPixel([z[2 * i], z[2 * i + 1]]);
          if (x < MARGIN || x > n - MARGIN || y < MARGIN || y > n - MARGIN) continue;
          g.fillStyle = COLOURS[labels[i] % 10];
          g.fillRect(x - 1.5, y - 1.5, 3, 3);
        }
        g.globalAlpha = 1;
      }
    }

    // A cross-hair ring at z.
    function marker(g, z, colour, radius) {
      const [x, y] = toPixel(z);
      g.strokeStyle = colour; g.lineWidth = 2;
      g.beginPath(); g.arc(x, y, radius, 0, 2 * Math.PI); g.stroke();
      g.beginPath(); g.moveTo(x - radius - 5, y); g.lineTo(x + radius + 5, y);
      g.moveTo(x, y - radius - 5); g.lineTo(x, y + radius + 5); g.stroke();
    }

    // The decoded picture, one canvas pixel block per image pixel (black ink on white).
    function drawDigit(pixels) {
      const image = new ImageData(IW, IH);
      for (let i = 0; i < IH * IW; i++) {
        const v = Math.round(255 * (1 - Math.min(1, Math.max(0, pixels[i]))));
        image.data[4 * i] = image.data[4 * i + 1] = image.data[4 * i + 2] = v;
        image.data[4 * i + 3] = 255;
      }
      const small = document.createElement("canvas");
      small.width = IW; small.height = IH;
      small.getContext("2d").putImageData(image, 0, 0);
      const g = digit.getContext("2d");
      g.imageSmoothingEnabled = false;
      g.drawImage(small, 0, 0, digit.width, digit.height);
    }

    // Decode the current z (the cursor's, else the pinned one) and redraw everything.
    function render() {
      const z = state.hover || state.pinned;
      state.pixels = decode(model, z, state.label);
      drawDigit(state.pixels);
      const g = plane.getContext("2d");
      g.setTransform(1, 0, 0, 1, 0, 0);
      g.drawImage(background, 0, 0);
      const dpr = plane.width / size();
      g.setTransform(dpr, 0, 0, dpr, 0, 0);
      marker(g, state.pinned, "#000", 6);
      if (state.hover) marker(g, state.hover, "#c00", 4);
      readout.textContent = "z = (" + z[0].toFixed(2) + ", " + z[1].toFixed(2) + ")"
        + (model.n_classes > 0 ? ",  y = " + state.label : "");
      mode.textContent = state.hover ? "following the cursor (click to pin)"
                                     : "pinned (arrow keys move it; Shift for bigger steps)";
    }

    // Mouse moves come faster than frames: decode at most once per frame.
    let queued = false;
    function renderSoon() {
      if (queued) return;
      queued = true;
      requestAnimationFrame(() => { queued = false; render(); });
    }

    function zAt(event) {
      const box = plane.getBoundingClientRect();
      return toZ(event.clientX - box.left, event.clientY - box.top).map(clamp);
    }
    plane.addEventListener("mousemove", (e) => { state.hover = zAt(e); renderSoon(); });
    plane.addEventListener("mouseleave", () => { state.hover = null; renderSoon(); });
    plane.addEventListener("click", (e) => { state.pinned = zAt(e); state.hover = null; render(); plane.focus(); });

    // The page's own controls and the test interface share these two setters.
    function setZ(z1, z2) { state.pinned = [z1, z2]; state.hover = null; render(); }
    function setLabel(k) {
      state.label = k;
      const radio = document.getElementById("label-" + k);
      if (radio) radio.checked = true;
      render();
    }

    document.addEventListener("keydown", (e) => {
      const step = (e.shiftKey ? 0.25 : 0.05) * (zhi - zlo) / 8;
      const moves = { ArrowLeft: [-step, 0], ArrowRight: [step, 0], ArrowUp: [0, step], ArrowDown: [0, -step] };
      if (moves[e.key]) {
        const [z1, z2] = state.pinned;
        setZ(clamp(z1 + moves[e.key][0]), clamp(z2 + moves[e.key][1]));
        e.preventDefault();
      } else if (model.n_classes > 0 && /^[0-9]$/.test(e.key) && Number(e.key) < model.n_classes) {
        setLabel(Number(e.key));
      }
    });

    // The CVAE's digit selector: one radio button per class.
    if (model.n_classes > 0) {
      const box = document.getElementById("labels");
      box.hidden = false;
      for (let k = 0; k < model.n_classes; k++) {
        const label = document.createElement("label");
        const radio = document.createElement("input");
        radio.type = "radio"; radio.name = "label"; radio.id = "label-" + k; radio.value = k;
        radio.checked = k === state.label;
        radio.addEventListener("change", () => setLabel(k));
        label.append(radio, " " + k);
        box.append(label);
      }
    }

    // The legend: which colour is which digit.
    const legend = document.getElementById("legend");
    if (model.points) {
      COLOURS.forEach((colour, k) => {
        const item = document.createElement("span");
        const swatch = document.createElement("i");
        swatch.style.background = colour;
        item.append(swatch, String(k));
        legend.append(item);
      });
    }

    window.addEventListener("resize", () => { drawBackground(); render(); });
    drawBackground();
    render();

    // A small interface for scripts and tests; the controls above use the same calls.
    window.explorer = {
      setZ: setZ,
      setLabel: setLabel,
      z: () => Array.from(state.hover || state.pinned),
      pixels: () => Array.from(state.pixels),
      decode: (z, label) => Array.from(decode(model, z, label || 0)),
      ready: true,
    };
  }

  if (document.readyState === "loading") document.addEventListener("DOMContentLoaded", start);
  else start();
})();
