"""The built-in datasets: MNIST, Fashion-MNIST, CIFAR-10 and the generated Shapes, with their file readers.
"""
