"""The detect verb done by OpenCV DNN, for bench/bench_process.py:
python bench/opencv_detect.py CFG WEIGHTS IMAGE [OUT]"""
import sys

import cv2
import numpy as np

cfg, weights, image = sys.argv[1:4]
out = sys.argv[4] if len(sys.argv) > 4 else "predictions.jpg"
net = cv2.dnn.readNetFromDarknet(cfg, weights)
img = cv2.imread(image)
h, w = img.shape[:2]
net.setInput(cv2.dnn.blobFromImage(img, 1 / 255, (416, 416), swapRB=True, crop=False))
rows = np.concatenate([o.reshape(-1, o.shape[-1]) for o in net.forward(net.getUnconnectedOutLayersNames())])
scores = rows[:, 5:].max(1) * (rows[:, 4] > 0)
keep = rows[scores > .5]
boxes = [[int((x - bw / 2) * w), int((y - bh / 2) * h), int(bw * w), int(bh * h)] for x, y, bw, bh in keep[:, :4]]
for i in np.array(cv2.dnn.NMSBoxes(boxes, scores[scores > .5].tolist(), .5, .45)).reshape(-1):
    x, y, bw, bh = boxes[i]
    cv2.rectangle(img, (x, y), (x + bw, y + bh), (0, 0, 255), 2)
    print(f"{int(keep[i, 5:].argmax())}: {scores[scores > .5][i] * 100:.0f}%")
cv2.imwrite(out, img)
