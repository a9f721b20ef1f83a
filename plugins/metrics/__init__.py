"""The built-in metrics: MAE and MSE, PSNR and SSIM, and Classifier Accuracy with its reference classifier.
"""
